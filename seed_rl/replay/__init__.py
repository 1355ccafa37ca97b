"""Prioritized replay on a C++ sum-tree (R2D2 replays sequences with it).

* :class:`SumTree` -- the batched C++ sum-tree (``seed_rl._ops``);
  :class:`NumpySumTree` -- the same in vectorised numpy (reference, baseline).
* :class:`PrioritizedReplay` -- FIFO replay with proportional priorities and
  importance-sampling weights.
"""

from seed_rl.replay.prioritized import PrioritizedReplay
from seed_rl.replay.sum_tree import NumpySumTree, SumTree

__all__ = ["NumpySumTree", "PrioritizedReplay", "SumTree"]
