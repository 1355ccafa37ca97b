"""Sum-trees for proportional prioritized replay.

:class:`SumTree` is the C++ implementation (``seed_rl._ops``, built by the
package's ``pip install``). :class:`NumpySumTree` is the same data structure
and API written in plain numpy: a vectorised reference used as the test oracle
and as the benchmark baseline (``tools/bench_sum_tree.py``).

Both keep ``capacity`` float64 priorities as the leaves of a complete binary
tree stored in one array: with ``L`` the smallest power of two >= capacity,
node 1 is the root, node ``k`` has children ``2k`` and ``2k + 1``, leaf ``i``
is node ``L + i``, and leaves past ``capacity`` are zero padding. Each internal
node is recomputed as ``left + right`` whenever a leaf below it changes, so
both implementations hold bit-identical nodes after the same operations and
therefore sample identical indices from identical targets.

API (batched; arrays are 1-D):

``update(indices, priorities)``
    Sets leaf priorities; O(n log capacity). Indices must lie in
    ``[0, capacity)``, priorities be finite and >= 0; everything is checked
    before anything is written, so a ValueError leaves the tree unchanged. A
    repeated index keeps its last priority.
``sample(targets) -> int64[n]``
    The leaf whose prefix-sum interval contains each target in
    ``[0, total()]``; uniform targets draw leaf ``i`` with probability
    ``p_i / total()``. Never returns a zero-priority leaf, even for a target
    at ``total()``. ValueError on a NaN or out-of-range target, or when the
    total is 0.
``get(indices) -> float64[n]``, ``total()``, ``capacity``
``to_array()`` / ``SumTree.from_array(priorities)``
    Leaf priorities as a float64[capacity] array, for checkpoints; the C++
    tree also pickles.
"""

from __future__ import annotations

import numpy as np

from seed_rl._ops import SumTree

__all__ = ["SumTree", "NumpySumTree"]


def _as_vector(values, name: str, kinds: str, dtype) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got {array.ndim} dimensions")
    if array.size and array.dtype.kind not in kinds:
        raise TypeError(f"{name} has dtype {array.dtype}, expected numpy dtype kind(s) {kinds!r}")
    return np.ascontiguousarray(array, dtype=dtype)


class NumpySumTree:
    """The sum-tree in vectorised numpy, with :class:`SumTree`'s API and errors.

    Batched operations work level by level over the whole batch (one numpy op
    per tree level), not element by element, so it is a fair baseline.
    """

    def __init__(self, capacity: int):
        capacity = int(capacity)
        if not 1 <= capacity <= 1 << 40:
            raise ValueError(f"SumTree: capacity must be in [1, 2^40], got {capacity}")
        self._capacity = capacity
        self._num_leaves = 1 << (capacity - 1).bit_length()
        self._depth = self._num_leaves.bit_length() - 1  # Edges from root to leaf.
        self._nodes = np.zeros(2 * self._num_leaves, dtype=np.float64)

    @property
    def capacity(self) -> int:
        return self._capacity

    def total(self) -> float:
        return float(self._nodes[1])

    def _check_indices(self, indices: np.ndarray) -> None:
        bad = (indices < 0) | (indices >= self._capacity)
        if bad.any():
            k = int(np.argmax(bad))
            raise ValueError(
                f"SumTree: index {indices[k]} (position {k}) is out of range [0, {self._capacity})"
            )

    @staticmethod
    def _check_priorities(priorities: np.ndarray, indices: np.ndarray | None) -> None:
        bad = ~(np.isfinite(priorities) & (priorities >= 0))
        if bad.any():
            k = int(np.argmax(bad))
            p = priorities[k]
            problem = "is NaN" if np.isnan(p) else "is infinite" if np.isinf(p) else "is negative"
            where = f"position {k}" + ("" if indices is None else f", index {indices[k]}")
            raise ValueError(
                f"SumTree: priority {float(p)!r} ({where}) {problem}; "
                "priorities must be finite and >= 0"
            )

    def _propagate(self, nodes: np.ndarray) -> None:
        """Recomputes all ancestors of ``nodes`` (tree positions), level by level."""
        for _ in range(self._depth):
            # Duplicate parents are harmless: each gets the same value.
            nodes = nodes >> 1
            self._nodes[nodes] = self._nodes[2 * nodes] + self._nodes[2 * nodes + 1]

    def update(self, indices, priorities) -> None:
        indices = _as_vector(indices, "indices", "iu", np.int64)
        priorities = _as_vector(priorities, "priorities", "fiu", np.float64)
        if indices.size != priorities.size:
            raise ValueError(
                f"update: got {indices.size} indices but {priorities.size} priorities"
            )
        self._check_indices(indices)
        self._check_priorities(priorities, indices)
        if indices.size == 0:
            return
        # numpy leaves the winner among repeated fancy-index writes unspecified:
        # keep each index's last occurrence explicitly.
        unique, first_in_reversed = np.unique(indices[::-1], return_index=True)
        last = indices.size - 1 - first_in_reversed
        nodes = unique + self._num_leaves
        previous = self._nodes[nodes].copy()
        self._nodes[nodes] = priorities[last]
        with np.errstate(over="ignore"):  # Detected just below.
            self._propagate(nodes)
        if not np.isfinite(self._nodes[1]):
            self._nodes[nodes] = previous
            self._propagate(nodes)
            raise OverflowError("SumTree: the total priority would overflow to infinity")

    def sample(self, targets) -> np.ndarray:
        targets = _as_vector(targets, "targets", "fiu", np.float64)
        total = self._nodes[1]
        if not total > 0:
            raise ValueError("SumTree: cannot sample, the total priority is 0")
        bad = ~((targets >= 0) & (targets <= total))
        if bad.any():
            k = int(np.argmax(bad))
            raise ValueError(
                f"SumTree: target {float(targets[k])!r} (position {k}) is outside "
                f"[0, total={float(total)!r}]"
            )
        nodes = np.ones(targets.size, dtype=np.int64)
        t = targets.copy()
        for _ in range(self._depth):
            left = 2 * nodes
            left_sum = self._nodes[left]
            # Same rule as the C++ walk: go left when the target falls in the
            # left child or the right child is empty, so the walk never enters
            # a zero subtree (round-off included).
            go_left = (t < left_sum) | (self._nodes[left + 1] == 0.0)
            t = np.where(go_left, t, t - left_sum)
            nodes = np.where(go_left, left, left + 1)
        return nodes - self._num_leaves

    def get(self, indices) -> np.ndarray:
        indices = _as_vector(indices, "indices", "iu", np.int64)
        self._check_indices(indices)
        return self._nodes[indices + self._num_leaves].copy()

    def to_array(self) -> np.ndarray:
        return self._nodes[self._num_leaves : self._num_leaves + self._capacity].copy()

    @classmethod
    def from_array(cls, priorities) -> "NumpySumTree":
        priorities = _as_vector(priorities, "priorities", "fiu", np.float64)
        tree = cls(priorities.size)
        tree._check_priorities(priorities, None)
        tree._nodes[tree._num_leaves : tree._num_leaves + tree._capacity] = priorities
        # Level by level from the bottom: every node is left + right, as in C++.
        level = tree._num_leaves // 2
        with np.errstate(over="ignore"):  # Detected just below.
            while level >= 1:
                nodes = np.arange(level, 2 * level)
                tree._nodes[nodes] = tree._nodes[2 * nodes] + tree._nodes[2 * nodes + 1]
                level //= 2
        if not np.isfinite(tree._nodes[1]):
            raise OverflowError("SumTree: the total priority would overflow to infinity")
        return tree

    def __repr__(self) -> str:
        return f"NumpySumTree(capacity={self._capacity}, total={self.total()!r})"
