"""How finished unrolls become training batches.

The learner loop pulls unrolls from the inference side while
:meth:`TrainingData.wants_data` says so, and trains on :meth:`TrainingData.sample`
otherwise. IMPALA uses each unroll once, in arrival order (:class:`OnPolicyData`);
R2D2 keeps them in a prioritized replay and holds a replay ratio.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from seed_rl.core.unroll import UnrollBatch


class TrainingData(Protocol):
    def add(self, unrolls: UnrollBatch) -> None: ...

    def wants_data(self) -> bool:
        """True while training must wait for more unrolls."""

    def sample(self) -> tuple[UnrollBatch, dict[str, np.ndarray], Any]:
        """A batch of unrolls, extra per-unroll arrays for the batch, and a handle for ``after_train``."""

    def after_train(self, handle: Any, priorities: np.ndarray | None) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...

    def reshard(self, states: list[dict], world_size: int) -> list[dict]:
        """A checkpoint's :meth:`state_dict` of each rank of a run (any number), as ``world_size`` states:
        one for each rank of this run, whose training data is built like this one."""


class OnPolicyData:
    """Every unroll is trained on exactly once, in arrival order, in batches of ``batch_size``."""

    def __init__(self, batch_size: int):
        self.batch_size = batch_size
        self._pending: list[UnrollBatch] = []
        self._count = 0

    def add(self, unrolls: UnrollBatch) -> None:
        self._pending.append(unrolls)
        self._count += len(unrolls)

    def wants_data(self) -> bool:
        return self._count < self.batch_size

    def sample(self) -> tuple[UnrollBatch, dict[str, np.ndarray], Any]:
        pending = UnrollBatch.concat(self._pending)
        batch = pending.select(slice(0, self.batch_size))
        rest = len(pending) - self.batch_size
        self._pending = [pending.select(slice(self.batch_size, None))] if rest else []
        self._count = rest
        return batch, {}, None

    def after_train(self, handle: Any, priorities: np.ndarray | None) -> None:
        pass

    def state_dict(self) -> dict:
        return {}  # at most one partial batch is lost on restart

    def load_state_dict(self, state: dict) -> None:
        pass

    def reshard(self, states: list[dict], world_size: int) -> list[dict]:
        return [{} for _ in range(world_size)]  # nothing to move
