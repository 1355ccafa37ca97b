"""A game with lives, for the life-loss tests: ``--env=lives_env:Lives-v0``.

Three lives; one is lost every ``steps_per_life`` steps (info["lives"] counts
down, as Atari's does) and the game ends with the last. Reward 1 per step, so a
whole game returns ``3 * steps_per_life``. Observations count the steps.
"""

from __future__ import annotations

import gymnasium
import numpy as np
from gymnasium import spaces

LIVES = 3


class LivesEnv(gymnasium.Env):
    def __init__(self, steps_per_life: int = 4):
        self.observation_space = spaces.Box(0.0, 1e6, (2,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.steps_per_life = steps_per_life
        self._t = 0

    def _observation(self):
        return np.array([self._t, self.lives], np.float32)

    @property
    def lives(self) -> int:
        return LIVES - self._t // self.steps_per_life

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self._observation(), {"lives": self.lives}

    def step(self, action):
        self._t += 1
        return self._observation(), 1.0, self.lives == 0, False, {"lives": self.lives}


gymnasium.register("Lives-v0", entry_point=LivesEnv)
