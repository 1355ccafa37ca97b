"""Proportional prioritized replay of arbitrary items (sequences, for R2D2).

Schaul et al. 2016, "Prioritized Experience Replay" (PER), Sec. 3.3 and 3.4:
proportional prioritization ``P(i) = p_i^alpha / sum_k p_k^alpha`` and
importance-sampling weights ``w_i = (N * P(i))^-beta``, normalised by
``max_i w_i``. What a priority is (R2D2's mix of max and mean TD error) is the
agent's business: ``seed_rl/agents/r2d2/priorities.py``.

The priorities live in a C++ sum-tree (:class:`seed_rl.replay.SumTree`), so
insertion, sampling and priority updates cost O(log capacity) per item.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Sequence

import numpy as np
import torch

from seed_rl.replay.sum_tree import SumTree

__all__ = ["PrioritizedReplay"]

# PER (Schaul et al. 2016), proportional variant on Atari: alpha 0.6, beta 0.4.
DEFAULT_PRIORITY_EXPONENT = 0.6
DEFAULT_IMPORTANCE_SAMPLING_EXPONENT = 0.4


def _check_priorities(priorities, n: int) -> np.ndarray:
    if isinstance(priorities, torch.Tensor):
        priorities = priorities.detach().cpu().numpy()
    priorities = np.asarray(priorities, dtype=np.float64)
    if priorities.shape != (n,):
        raise ValueError(f"expected {n} priorities (shape ({n},)), got shape {priorities.shape}")
    bad = ~(np.isfinite(priorities) & (priorities >= 0))
    if bad.any():
        k = int(np.argmax(bad))
        raise ValueError(
            f"priority {float(priorities[k])!r} at position {k} is invalid: "
            "priorities must be finite and >= 0"
        )
    return priorities


class PrioritizedReplay:
    """A fixed-capacity FIFO replay of arbitrary items with proportional priorities.

    Each item is one stored sequence, any Python object (e.g. a dict of numpy
    arrays); it is kept by reference, never copied. Once full, each insertion
    overwrites the oldest item (first in, first out), and its priority with it.

    Keys: every inserted item gets an id, its insertion count (0, 1, 2, ...
    over the buffer's lifetime); it lives in slot ``id % capacity``.
    :meth:`insert` and :meth:`sample` return these ids as ``indices``, and
    :meth:`update_priorities` takes them back: an id whose slot has since been
    overwritten by a newer item is stale and its update is dropped, so a
    learner's late priority update never lands on the wrong sequence.

    Sampling is stratified: ``[0, total)`` is cut into ``batch_size`` equal
    segments and one uniform target is drawn in each, as in PER's proportional
    variant. Every draw still has the marginal ``P(i) = p_i^alpha / sum_k
    p_k^alpha`` (the expected count of item ``i`` in a batch is ``batch_size *
    P(i)``), with less variance in batch composition than i.i.d. draws; items
    may repeat within a batch. Items with priority 0 are never sampled.

    Eviction: ``on_evict``, when given, is called with the items that
    :meth:`insert` pushed out (oldest first): the stored items it overwrote,
    then any new items of the same call that were overwritten at once (more
    than ``capacity`` inserted together). It runs after the insertion, outside
    the lock. :meth:`load_state_dict` replaces the contents without calling it.

    Thread-safe: one lock guards every method.

    Args:
      capacity: the maximum number of items.
      priority_exponent: alpha; the tree stores ``p ** alpha``. 0 gives
        uniform sampling.
      importance_sampling_exponent: beta of the weights ``(N * P(i))^-beta``
        (an attribute, so it can be annealed).
      seed: seed of the sampling random number generator.
      on_evict: called with the list of items each insertion evicted (e.g. to
        free what they reference).
    """

    def __init__(
        self,
        capacity: int,
        priority_exponent: float = DEFAULT_PRIORITY_EXPONENT,
        importance_sampling_exponent: float = DEFAULT_IMPORTANCE_SAMPLING_EXPONENT,
        seed: int = 0,
        on_evict: Callable[[list[Any]], None] | None = None,
    ):
        capacity = int(capacity)
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if not (np.isfinite(priority_exponent) and priority_exponent >= 0):
            raise ValueError(f"priority_exponent must be finite and >= 0, got {priority_exponent}")
        if not (np.isfinite(importance_sampling_exponent) and importance_sampling_exponent >= 0):
            raise ValueError(
                "importance_sampling_exponent must be finite and >= 0, "
                f"got {importance_sampling_exponent}"
            )
        self._capacity = capacity
        self._alpha = float(priority_exponent)
        self.importance_sampling_exponent = float(importance_sampling_exponent)
        self._tree = SumTree(capacity)
        self._items: list[Any] = [None] * capacity
        # Id of the item in each slot; -1 for a slot never written.
        self._slot_ids = np.full(capacity, -1, dtype=np.int64)
        self._num_inserted = 0
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self.on_evict = on_evict

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def priority_exponent(self) -> float:
        return self._alpha

    @property
    def num_inserted(self) -> int:
        """Items inserted over the buffer's lifetime (the next item's id)."""
        return self._num_inserted

    def __len__(self) -> int:
        return min(self._num_inserted, self._capacity)

    def total_priority(self) -> float:
        """``sum_i p_i^alpha`` over the stored items."""
        return self._tree.total()

    def _tree_priorities(self, priorities: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            # An overflow to inf is reported by the tree, before any change.
            return priorities**self._alpha

    def insert(self, items: Sequence[Any], priorities) -> np.ndarray:
        """Appends ``items`` with raw priorities ``p`` (>= 0, finite; float[n], numpy or torch).

        The tree stores ``p ** alpha``. When the buffer is full the oldest items
        are evicted. Returns the new items' ids (int64[n]). On invalid
        priorities raises ValueError and stores nothing.
        """
        items = list(items)
        n = len(items)
        priorities = _check_priorities(priorities, n)
        with self._lock:
            ids = np.arange(self._num_inserted, self._num_inserted + n, dtype=np.int64)
            slots = ids % self._capacity
            # Validates everything before writing anything; a repeated slot
            # (n > capacity) keeps its last, i.e. newest, priority.
            self._tree.update(slots, self._tree_priorities(priorities))
            keep = slice(max(0, n - self._capacity), n)  # Older ones are overwritten at once.
            written = slots[keep].tolist()
            stored = sorted((int(self._slot_ids[slot]), slot) for slot in written if self._slot_ids[slot] >= 0)
            evicted = [self._items[slot] for _, slot in stored]
            evicted += items[: keep.start]
            for item, slot in zip(items[keep], written):
                self._items[slot] = item
            self._slot_ids[slots[keep]] = ids[keep]
            self._num_inserted += n
        if self.on_evict is not None and evicted:
            self.on_evict(evicted)
        return ids

    def sample(self, batch_size: int, normalized: bool = True) -> tuple[np.ndarray, list[Any], np.ndarray]:
        """Draws ``batch_size`` items with probability ``P(i) = p_i^alpha / sum_k p_k^alpha``.

        Returns ``(indices, items, weights)``: the items' ids (int64[b], for
        :meth:`update_priorities`), the items, and importance-sampling weights
        ``w_i = (N * P(i))^-beta / max_j w_j`` (float32[b], max 1) with ``N =
        len(self)`` and the max over this batch; with ``normalized=False`` the
        weights before that division (float64), for a caller that normalises
        over several replays' batches. Raises ValueError when the buffer is
        empty or all priorities are 0.
        """
        batch_size = int(batch_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        with self._lock:
            size = len(self)
            total = self._tree.total()
            if size == 0 or not total > 0:
                raise ValueError(
                    "cannot sample: the replay is empty"
                    if size == 0
                    else f"cannot sample: all {size} items have priority 0"
                )
            segment = total / batch_size
            targets = (np.arange(batch_size) + self._rng.random(batch_size)) * segment
            np.minimum(targets, total, out=targets)  # Round-off may push the last past total.
            slots = self._tree.sample(targets)
            probabilities = self._tree.get(slots) / total
            items = [self._items[slot] for slot in slots.tolist()]
            ids = self._slot_ids[slots]
        weights = (size * probabilities) ** -self.importance_sampling_exponent
        if not normalized:
            return ids, items, weights
        weights /= weights.max()
        return ids, items, weights.astype(np.float32)

    def update_priorities(self, indices, priorities) -> np.ndarray:
        """Sets new raw priorities for the items with ids ``indices`` (from :meth:`sample`).

        Ids whose slot now holds a newer item are ignored. Returns a bool mask
        of the entries applied. A repeated id keeps its last priority. Raises
        ValueError, changing nothing, on an id never issued or invalid
        priorities.
        """
        indices = np.asarray(indices)
        if indices.ndim != 1 or (indices.size and indices.dtype.kind not in "iu"):
            raise ValueError(
                f"indices must be a 1-D integer array, got {indices.dtype}{indices.shape}"
            )
        indices = indices.astype(np.int64, copy=False)
        priorities = _check_priorities(priorities, indices.size)
        with self._lock:
            bad = (indices < 0) | (indices >= self._num_inserted)
            if bad.any():
                k = int(np.argmax(bad))
                raise ValueError(
                    f"index {int(indices[k])} at position {k} was never issued "
                    f"(ids so far: 0..{self._num_inserted - 1})"
                )
            slots = indices % self._capacity
            live = self._slot_ids[slots] == indices
            self._tree.update(slots[live], self._tree_priorities(priorities[live]))
        return live

    def get_priorities(self, indices) -> np.ndarray:
        """Stored ``p^alpha`` of live ids (float64[n]); NaN for stale ids."""
        indices = np.asarray(indices, dtype=np.int64)
        with self._lock:
            slots = indices % self._capacity
            live = (indices >= 0) & (self._slot_ids[slots] == indices)
            out = self._tree.get(slots)
        out[~live] = np.nan
        return out

    def state_dict(self) -> dict:
        """Everything needed to resume: items, priorities, ring position and rng.

        Items are kept by reference (shallow copy of the list); the arrays are
        copies. Meant for ``torch.save`` / pickle.
        """
        with self._lock:
            size = len(self)
            return {
                "capacity": self._capacity,
                "priority_exponent": self._alpha,
                "importance_sampling_exponent": self.importance_sampling_exponent,
                "num_inserted": self._num_inserted,
                "position": self._num_inserted % self._capacity,  # Next slot written.
                "items": self._items[:size],  # Slots fill in order 0, 1, ...
                "priorities": self._tree.to_array(),  # p^alpha per slot.
                "slot_ids": self._slot_ids.copy(),
                "rng": self._rng.bit_generator.state,
            }

    def load_state_dict(self, state: dict) -> None:
        """Restores :meth:`state_dict`'s output into this (same-capacity) buffer.

        The stored priorities are converted if this buffer's priority exponent
        differs (``p^a -> (p^a)^(alpha / a)``); ``importance_sampling_exponent``
        stays this buffer's own setting.
        """
        capacity = int(state["capacity"])
        if capacity != self._capacity:
            raise ValueError(
                f"state is for capacity {capacity}, this replay has capacity {self._capacity}"
            )
        num_inserted = int(state["num_inserted"])
        size = min(num_inserted, capacity)
        items = list(state["items"])
        leaves = np.asarray(state["priorities"], dtype=np.float64)
        slot_ids = np.asarray(state["slot_ids"], dtype=np.int64)
        if len(items) != size or leaves.shape != (capacity,) or slot_ids.shape != (capacity,):
            raise ValueError(
                "inconsistent replay state: items, priorities or slot_ids have the wrong size"
            )
        saved_alpha = float(state["priority_exponent"])
        if saved_alpha != self._alpha:
            if saved_alpha == 0:
                raise ValueError("cannot convert priorities saved with priority_exponent 0")
            leaves = leaves ** (self._alpha / saved_alpha)
        tree = SumTree.from_array(leaves)  # Validates the priorities.
        rng = np.random.default_rng()
        rng.bit_generator.state = state["rng"]
        with self._lock:
            self._tree = tree
            self._items = items + [None] * (capacity - size)
            self._slot_ids = slot_ids.copy()
            self._num_inserted = num_inserted
            self._rng = rng
