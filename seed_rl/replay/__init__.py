"""Prioritized sequence replay (R2D2) on a C++ sum-tree.

* :class:`SumTree` -- the batched C++ sum-tree (``seed_rl._ops``);
  :class:`NumpySumTree` -- the same in vectorised numpy (reference, baseline).
* :class:`PrioritizedReplay` -- FIFO replay with proportional priorities and
  importance-sampling weights.
* :func:`sequence_priority` -- R2D2's per-sequence priority from TD errors.
"""

from seed_rl.replay.prioritized import PrioritizedReplay, sequence_priority
from seed_rl.replay.sum_tree import NumpySumTree, SumTree

__all__ = ["NumpySumTree", "PrioritizedReplay", "SumTree", "sequence_priority"]
