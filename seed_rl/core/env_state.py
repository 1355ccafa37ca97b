"""Learner-side bookkeeping of every connected environment.

SEED RL keeps each environment's recurrent state and the trajectory being
assembled on the learner, so actors stay stateless. :class:`EnvStateTable`
holds the recurrent states in preallocated tensors (one slot per environment,
reused when environments leave, so memory stays bounded over reconnects) and
:class:`UnrollBuilder` turns the per-step records of one environment into
fixed-length unrolls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable

import numpy as np
import torch

CoreState = tuple[torch.Tensor, ...]


class EnvStateTable:
    """Recurrent states of many environments, addressed by a hashable key.

    ``initial_state(n)`` must return a tuple of tensors shaped ``[n, ...]``;
    an empty tuple means the model has no recurrent state.
    """

    def __init__(self, initial_state, device: torch.device, capacity: int = 64):
        self._initial_state = initial_state
        self._device = device
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

    def gather(self, keys: list[Hashable]) -> tuple[CoreState, torch.Tensor]:
        """Returns the states of ``keys`` (new keys get the initial state) and their slots."""
        index = torch.tensor([self._slot(k) for k in keys], dtype=torch.long, device=self._device)
        return tuple(t[index] for t in self._tensors), index

    def scatter(self, index: torch.Tensor, state: CoreState) -> None:
        for table, value in zip(self._tensors, state):
            table[index] = value.detach()

    def remove(self, keys: list[Hashable]) -> None:
        """Frees the slots of environments that are gone."""
        for key in keys:
            slot = self._slots.pop(key, None)
            if slot is not None:
                self._free.append(slot)


@dataclass
class Unroll:
    """``length + 1`` consecutive steps of one environment.

    Step ``t`` holds the observation seen at ``t``, the reward and done flag that
    arrived with it (the result of action ``t - 1``), the action chosen at ``t``
    and the agent outputs of that choice (e.g. behaviour logits). Consecutive
    unrolls share one step, so the last step bootstraps the next unroll's first.
    ``initial_core_state`` is the recurrent state before step 0.
    """

    observation: np.ndarray
    reward: np.ndarray
    done: np.ndarray
    action: np.ndarray
    agent_outputs: dict[str, np.ndarray]
    initial_core_state: tuple[np.ndarray, ...]
    # Where ``done`` ends an episode cut by a time limit (Pardo et al. 2018):
    # agents may bootstrap through it or leave it out rather than treat it as terminal.
    truncated: np.ndarray | None = None


@dataclass
class StepRecord:
    observation: np.ndarray
    reward: float
    done: bool
    action: int
    agent_outputs: dict[str, np.ndarray]
    core_state: tuple[np.ndarray, ...]  # state before this step
    truncated: bool = False


class UnrollBuilder:
    """Accumulates steps of one environment and emits unrolls of ``length + 1`` steps.

    Consecutive unrolls share their last ``overlap`` steps: 1 for IMPALA (the
    bootstrap step), more for R2D2's overlapping sequences.
    """

    def __init__(self, length: int, overlap: int = 1):
        if length < 1:
            raise ValueError(f"unroll length must be >= 1, got {length}")
        if not 0 <= overlap <= length:
            raise ValueError(f"unroll overlap must be in [0, {length}], got {overlap}")
        self.length = length
        self.overlap = overlap
        self._steps: list[StepRecord] = []

    def __len__(self) -> int:
        return len(self._steps)

    def append(self, step: StepRecord) -> Unroll | None:
        self._steps.append(step)
        if len(self._steps) < self.length + 1:
            return None
        steps = self._steps
        self._steps = steps[len(steps) - self.overlap :]
        return Unroll(
            observation=np.stack([s.observation for s in steps]),
            reward=np.array([s.reward for s in steps], dtype=np.float32),
            done=np.array([s.done for s in steps], dtype=bool),
            action=np.array([s.action for s in steps], dtype=np.int64),
            agent_outputs={k: np.stack([s.agent_outputs[k] for s in steps]) for k in steps[0].agent_outputs},
            initial_core_state=steps[0].core_state,
            truncated=np.array([s.truncated for s in steps], dtype=bool),
        )


def stack_unrolls(unrolls: list[Unroll], device: torch.device) -> dict:
    """Stacks unrolls time-major: arrays become tensors shaped ``[T + 1, B, ...]``."""

    def time_major(arrays: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(arrays, axis=1)).to(device, non_blocking=True)

    return {
        "observation": time_major([u.observation for u in unrolls]),
        "reward": time_major([u.reward for u in unrolls]),
        "done": time_major([u.done for u in unrolls]),
        "truncated": time_major(
            [u.truncated if u.truncated is not None else np.zeros_like(u.done) for u in unrolls]
        ),
        "action": time_major([u.action for u in unrolls]),
        "agent_outputs": {
            k: time_major([u.agent_outputs[k] for u in unrolls]) for k in unrolls[0].agent_outputs
        },
        "initial_core_state": tuple(
            torch.from_numpy(np.stack([u.initial_core_state[i] for u in unrolls])).to(device)
            for i in range(len(unrolls[0].initial_core_state))
        ),
    }
