"""Learner-side bookkeeping of every connected environment.

SEED RL keeps each environment's recurrent state and the trajectory being
assembled on the learner, so actors stay stateless. :class:`EnvStateTable`
holds the recurrent states in preallocated tensors (one slot per environment,
reused when environments leave, so memory stays bounded over reconnects);
``seed_rl/learner/trajectories.py`` assembles the trajectories.
"""

from __future__ import annotations

from typing import Hashable

import numpy as np
import torch

from seed_rl.core.agent import CoreState



class EnvStateTable:
    """Recurrent states of many environments, addressed by a hashable key.

    ``initial_state(n)`` must return a tuple of tensors shaped ``[n, ...]``;
    an empty tuple means the model has no recurrent state.
    """

    def __init__(self, initial_state, device: torch.device, capacity: int = 64):
        self._initial_state = initial_state
        self._device = device
        self._initial_capacity = capacity
        self._slots: dict[Hashable, int] = {}
        self._free: list[int] = list(range(capacity))[::-1]
        self._tensors: list[torch.Tensor] = [t.to(device) for t in initial_state(capacity)]
        self._capacity = capacity

    def __len__(self) -> int:
        return len(self._slots)

    @property
    def capacity(self) -> int:
        return self._capacity

    def _grow(self) -> None:
        extra = self._capacity
        self._tensors = [
            torch.cat([t, s.to(self._device)]) for t, s in zip(self._tensors, self._initial_state(extra))
        ]
        self._free.extend(range(self._capacity + extra - 1, self._capacity - 1, -1))
        self._capacity += extra

    def _slot(self, key: Hashable) -> int:
        slot = self._slots.get(key)
        if slot is None:
            if not self._free:
                self._grow()
            slot = self._free.pop()
            self._slots[key] = slot
            fresh = self._initial_state(1)
            for table, value in zip(self._tensors, fresh):
                table[slot] = value[0].to(self._device)
        return slot

    def slots(self, keys: list[Hashable]) -> np.ndarray:
        """The slots of ``keys``; new keys get a slot holding the initial state."""
        return np.fromiter((self._slot(k) for k in keys), np.int64, len(keys))

    def states(self, index: torch.Tensor) -> CoreState:
        """The states in the slots ``index`` (a long tensor on the table's device)."""
        return tuple(t[index] for t in self._tensors)

    def scatter(self, index: torch.Tensor, state: CoreState) -> None:
        for table, value in zip(self._tensors, state):
            table[index] = value.detach()

    def compaction(self) -> np.ndarray | None:
        """Moves the live environments to the lowest slots once at most a quarter of the table is used.

        Returns ``moved``: ``moved[old_slot]`` is the new slot of a live environment
        (-1 for a free slot), or None where the table stays as it is. The table then
        holds the smallest power-of-two multiple of its initial capacity that has room
        for twice the live environments, so memory follows the environments connected
        now, not the most ever connected (an actor that asked for 100k environments
        and left).
        """
        live = len(self._slots)
        if self._capacity <= self._initial_capacity or 4 * live > self._capacity:
            return None
        capacity = self._initial_capacity
        while capacity < 2 * live:
            capacity *= 2
        moved = np.full(self._capacity, -1, np.int64)
        keys = list(self._slots)
        old = np.fromiter((self._slots[k] for k in keys), np.int64, len(keys))
        moved[old] = np.arange(live)
        index = torch.from_numpy(old).to(self._device)
        fresh = [t.to(self._device) for t in self._initial_state(capacity)]
        for table, new in zip(self._tensors, fresh):
            new[:live] = table[index]
        self._tensors = fresh
        self._slots = {k: i for i, k in enumerate(keys)}
        self._free = list(range(capacity - 1, live - 1, -1))
        self._capacity = capacity
        return moved

    def remove(self, keys: list[Hashable]) -> list[int]:
        """Frees the slots of environments that are gone; returns the freed slots."""
        freed = []
        for key in keys:
            slot = self._slots.pop(key, None)
            if slot is not None:
                self._free.append(slot)
                freed.append(slot)
        return freed
