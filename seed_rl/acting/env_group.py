"""An actor's environments: K of them stepped in lock-step, written into one step's arrays."""

from __future__ import annotations

import numpy as np

from seed_rl.acting.settings import ActorSettings
from seed_rl.core.step import allocate_step
from seed_rl.envs import make_env
from seed_rl.transport.errors import Refused


class EnvGroup:
    """K environments stepped in lock-step, with auto-reset and episode statistics.

    Each step is written into ``out``, a ``[K, ...]`` array per field of
    :data:`seed_rl.core.step.STEP_FIELDS`: arrays of this process for gRPC,
    shared with the learner for the shared-memory transport.
    """

    def __init__(self, settings: ActorSettings, indices: range):
        base_seed = settings.seed * 100_003 + settings.actor_id * 1_009
        self.first_env = settings.actor_id * settings.envs_per_actor + indices.start  # across all actors
        self.seeds = [base_seed + i for i in indices]
        self.envs = [make_env(settings.env_name, s, settings.env_config) for s in self.seeds]
        self.num_actions = int(self.envs[0].action_space.n)
        self.returns = np.zeros(len(indices), dtype=np.float64)
        self.lengths = np.zeros(len(indices), dtype=np.int64)
        self.lives = np.zeros(len(indices), dtype=np.int64)  # info["lives"] where the env reports it (Atari)
        self.resets = 0
        self.out: dict[str, np.ndarray] | None = None  # allocated at the first reset unless a transport provides it

    def _write_observation(self, i: int, observation) -> None:
        if self.out is None:
            observation = np.asarray(observation)
            self.out = allocate_step(len(self.envs), observation.shape, observation.dtype.name)
        try:
            self.out["observation"][i] = observation
        except ValueError:
            raise Refused(
                f"observation shape {np.shape(observation)} does not match the learner's environment "
                f"{self.out['observation'].shape[1:]}; start the actor with the learner's --env and env flags"
            ) from None

    def reset_all(self) -> dict[str, np.ndarray]:
        for i, env in enumerate(self.envs):
            observation, info = env.reset(seed=self.seeds[i] + 7919 * self.resets)
            self.lives[i] = info.get("lives", 0)
            self._write_observation(i, observation)
        self.resets += 1
        self.returns[:] = 0
        self.lengths[:] = 0
        self.out["reward"][:] = 0
        self.out["done"][:] = True
        self.out["truncated"][:] = False
        self.out["life_lost"][:] = False
        return self.out

    def step(self, actions: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """Applies ``actions``; returns the step and the (returns, lengths) of episodes that ended."""
        if actions.shape != (len(self.envs),):
            raise Refused(f"learner sent {actions.shape} actions for {len(self.envs)} environments")
        if len(actions) and not 0 <= int(actions.min()) <= int(actions.max()) < self.num_actions:
            raise Refused(
                f"learner sent action {int(actions.max())} but {self.num_actions} actions exist here; start the "
                "actor with the learner's env flags (R2D2 on Atari plays all 18: --full_action_space)"
            )
        out = self.out
        finished_returns, finished_lengths = [], []
        for i, env in enumerate(self.envs):
            observation, reward, terminated, truncated, info = env.step(int(actions[i]))
            lives = info.get("lives", 0)
            life_lost = lives < self.lives[i]
            self.lives[i] = lives
            self.returns[i] += reward
            self.lengths[i] += 1
            done = terminated or truncated
            if done:
                finished_returns.append(self.returns[i])
                finished_lengths.append(self.lengths[i])
                self.returns[i] = 0
                self.lengths[i] = 0
                observation, info = env.reset()
                self.lives[i] = info.get("lives", 0)
            self._write_observation(i, observation)
            out["reward"][i] = reward
            out["done"][i] = done
            out["truncated"][i] = truncated and not terminated
            out["life_lost"][i] = life_lost and not done
        return out, np.asarray(finished_returns, np.float32), np.asarray(finished_lengths, np.int32)

    def close(self) -> None:
        for env in self.envs:
            env.close()
