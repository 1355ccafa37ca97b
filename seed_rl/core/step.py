"""One step of an actor's environments, as the learner's inference receives it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class StepRequest:
    """One step of all environments of one actor stream."""

    stream_id: int
    first_env_index: int  # global index of this actor's first environment
    observation: np.ndarray  # [K, ...]
    reward: np.ndarray  # [K] float32, result of the previous action
    done: np.ndarray  # [K] bool, observation starts a new episode
    truncated: np.ndarray  # [K] bool, the episode that ended hit a time limit

    @property
    def num_envs(self) -> int:
        return len(self.reward)
