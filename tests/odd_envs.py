"""Gymnasium environments with unusual observation shapes and action counts.

Importing this module registers them (``--env=odd_envs:<id>`` with ``tests/`` on
PYTHONPATH), so the tests can train on them through ``python -m seed_rl.train``
exactly as a user would train on an environment of their own package.

Each episode lasts ``episode_length`` steps; the reward is 1 when the action
equals a target that the observation shows, else 0, so the observation matters.
"""

from __future__ import annotations

import gymnasium
import numpy as np
from gymnasium import spaces

# id -> (observation shape, dtype, number of actions)
ODD_ENVS = {
    "OddImage-v0": ((3, 50, 37), np.uint8, 11),
    "OddGrayImage-v0": ((1, 9, 13), np.uint8, 2),
    "OddVector1-v0": ((1,), np.float32, 2),
    "OddVector17-v0": ((17,), np.float64, 11),
    "OddMatrix-v0": ((4, 6), np.float32, 3),
    "OddBytes-v0": ((5,), np.uint8, 7),
    "OddInts-v0": ((3,), np.int64, 4),  # integer Boxes other than uint8 reach the agents as float32
}


class CueEnv(gymnasium.Env):
    """Shows a target action in the observation and rewards choosing it."""

    metadata = {"render_modes": []}

    def __init__(self, shape: tuple[int, ...], dtype, num_actions: int, episode_length: int = 10):
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.num_actions = num_actions
        self.episode_length = episode_length
        if self.dtype == np.uint8:
            self.observation_space = spaces.Box(0, 255, self.shape, np.uint8)
        elif np.issubdtype(self.dtype, np.integer):
            self.observation_space = spaces.Box(0, num_actions, self.shape, self.dtype)
        else:
            self.observation_space = spaces.Box(-1.0, 1.0, self.shape, self.dtype)
        self.action_space = spaces.Discrete(num_actions)
        self._t = 0
        self._target = 0

    def _observation(self) -> np.ndarray:
        obs = np.zeros(self.shape, self.dtype)
        flat = obs.reshape(-1)
        if self.dtype == np.uint8:
            flat[self._target % flat.size] = 255
        elif np.issubdtype(self.dtype, np.integer):
            flat[0] = self._target
        else:
            flat[0] = self._target / max(1, self.num_actions - 1)
        return obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        self._target = int(self.np_random.integers(self.num_actions))
        return self._observation(), {}

    def step(self, action):
        if not self.action_space.contains(int(action)):
            raise ValueError(f"action {action} outside {self.action_space}")
        reward = 1.0 if int(action) == self._target else 0.0
        self._t += 1
        self._target = int(self.np_random.integers(self.num_actions))
        return self._observation(), reward, self._t >= self.episode_length, False, {}


for _env_id, (_shape, _dtype, _actions) in ODD_ENVS.items():
    if _env_id not in gymnasium.registry:
        gymnasium.register(
            id=_env_id,
            entry_point=CueEnv,
            kwargs={"shape": _shape, "dtype": _dtype, "num_actions": _actions},
        )
