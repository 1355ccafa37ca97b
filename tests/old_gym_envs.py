"""An environment written for the old gym API (gym <= 0.25), registered with gym.

``reset()`` returns only the observation, ``step()`` returns
``(observation, reward, done, info)`` and seeding goes through ``seed()``: the
API that shimmy's ``GymV21CompatibilityV0`` converts. Importing this module
registers ``OldApiCorridor-v0`` with gym (with ``apply_api_compatibility`` on
gym 0.26, which is how gym 0.26 itself marks old-API environments).

The corridor: the agent starts at 0 and the goal is at ``length``; action 1
moves right, action 0 left (not below 0). Reaching the goal gives reward 1 and
ends the episode; gym's TimeLimit cuts episodes at 20 steps.
"""

from __future__ import annotations

import gym
import numpy as np
from gym import spaces

MAX_EPISODE_STEPS = 20


class OldApiCorridor(gym.Env):
    metadata = {"render.modes": []}

    def __init__(self, length: int = 5):
        self.length = length
        self.observation_space = spaces.Box(0.0, 1.0, (2,), np.float64)
        self.action_space = spaces.Discrete(2)
        self.position = 0
        self.seeds: list[int | None] = []

    def seed(self, seed=None):
        self.seeds.append(seed)
        return [seed]

    def _observation(self) -> np.ndarray:
        return np.array([self.position / self.length, 1.0], np.float64)

    def reset(self):
        self.position = 0
        return self._observation()

    def step(self, action):
        self.position = max(0, self.position + (1 if int(action) == 1 else -1))
        done = self.position >= self.length
        return self._observation(), float(done), done, {"position": self.position}

    def render(self, mode="human"):
        return None


_VERSION = tuple(int(part) for part in gym.__version__.split(".")[:2])
_REGISTRY = gym.envs.registry if isinstance(gym.envs.registry, dict) else gym.envs.registry.env_specs
if "OldApiCorridor-v0" not in _REGISTRY:
    extra = {"apply_api_compatibility": True} if _VERSION >= (0, 26) else {}
    gym.envs.registration.register(
        id="OldApiCorridor-v0",
        entry_point=OldApiCorridor,
        max_episode_steps=MAX_EPISODE_STEPS,
        **extra,
    )
