"""R2D2's path from unrolls to batches: prioritized replay at a held replay ratio."""

from __future__ import annotations

from typing import Any

import logging

import numpy as np

from seed_rl.core.env_state import Unroll
from seed_rl.replay.prioritized import PrioritizedReplay

log = logging.getLogger(__name__)


class ReplayData:
    """Inserts every sequence into a prioritized replay and samples training batches.

    The replay ratio is the number of times each inserted step is trained on,
    on average: training waits for data while ``trained steps >= replay_ratio *
    inserted steps``, and the learner stops pulling unrolls (so the actors wait)
    while it is below. New sequences get the largest priority seen so far
    (Schaul et al. 2016), so each is sampled soon after insertion.
    """

    def __init__(
        self,
        replay: PrioritizedReplay,
        batch_size: int,
        replay_ratio: float,
        min_size: int,
        trained_steps_per_sequence: int,
        new_steps_per_sequence: int,
        checkpoint_contents: bool = True,
    ):
        self.replay = replay
        self.batch_size = batch_size
        self.replay_ratio = replay_ratio
        self.min_size = min_size
        self.trained_steps_per_sequence = trained_steps_per_sequence
        self.new_steps_per_sequence = new_steps_per_sequence
        self.checkpoint_contents = checkpoint_contents
        self.inserted_steps = 0
        self.trained_steps = 0
        self.max_priority = 1.0

    def add(self, unroll: Unroll) -> None:
        self.replay.insert([unroll], np.array([self.max_priority]))
        self.inserted_steps += self.new_steps_per_sequence

    def wants_data(self) -> bool:
        if len(self.replay) < self.min_size:
            return True
        return self.trained_steps >= self.replay_ratio * self.inserted_steps

    def sample(self) -> tuple[list[Unroll], dict[str, np.ndarray], Any]:
        ids, unrolls, weights = self.replay.sample(self.batch_size)
        self.trained_steps += self.batch_size * self.trained_steps_per_sequence
        return unrolls, {"importance_weights": weights}, ids

    def after_train(self, handle: Any, priorities: np.ndarray | None) -> None:
        if priorities is None:
            raise ValueError("R2D2's train_step must return per-sequence priorities")
        self.replay.update_priorities(handle, priorities)
        self.max_priority = max(self.max_priority, float(np.max(priorities)))

    def state_dict(self) -> dict:
        state = {
            "inserted_steps": self.inserted_steps,
            "trained_steps": self.trained_steps,
            "max_priority": self.max_priority,
        }
        if self.checkpoint_contents:
            state["replay"] = self.replay.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        self.inserted_steps = state["inserted_steps"]
        self.trained_steps = state["trained_steps"]
        self.max_priority = state["max_priority"]
        if "replay" in state:
            self.replay.load_state_dict(state["replay"])
            log.info("replay holds %d sequences from the checkpoint", len(self.replay))
        else:
            log.info("the checkpoint holds no replay contents (--nocheckpoint_replay): refilling from empty")
