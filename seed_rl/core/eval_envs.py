"""Which environments evaluate instead of train (SEED RL's ``--num_eval_envs``).

Of the run's ``total_envs`` environments (global indices
``actor_id * envs_per_actor + k``), the last ``num_eval_envs`` are evaluation
environments: the agent acts on them as it would be evaluated (R2D2 with
``--eval_epsilon``, IMPALA with its policy), their steps never reach the
trajectories or the replay, and their episodes are reported apart
(``eval/...``). Indices at or past ``total_envs`` (actors the launcher did not
number) are training environments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class EvalEnvs:
    total_envs: int
    num_eval_envs: int = 0

    def __post_init__(self):
        if not 0 <= self.num_eval_envs < self.total_envs:
            raise ValueError(
                f"--num_eval_envs={self.num_eval_envs} must be at least 0 and leave training environments of the "
                f"{self.total_envs} (--num_actors x --envs_per_actor)"
            )

    @property
    def num_training_envs(self) -> int:
        return self.total_envs - self.num_eval_envs

    @property
    def first_eval_env(self) -> int:
        return self.total_envs - self.num_eval_envs

    def is_eval(self, env_index: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Elementwise: whether each global environment index is an evaluation environment."""
        return (env_index >= self.first_eval_env) & (env_index < self.total_envs)

    def training_envs_of(self, first_env: int, num_envs: int) -> int:
        """How many of the environments ``first_env ..`` ``first_env + num_envs - 1`` train."""
        return int((~self.is_eval(np.arange(first_env, first_env + num_envs))).sum())


NO_EVAL_ENVS = EvalEnvs(total_envs=1)
