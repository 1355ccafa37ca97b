"""A memory task for recurrent agents: recall a cue shown only at the first step.

Step 0 shows one of two cues; the next ``delay`` observations are blank; the
last observation asks the question (its query flag is set) and the action taken
there is rewarded +1 if it names the cue and -1 otherwise. Every other reward is
0. A memoryless policy sees the same query observation for both cues, so its
expected return is 0; only an agent that carries the cue in its state can do
better. Registered as ``memory_env:MemoryCue-v0``.
"""

from __future__ import annotations

import gymnasium
import numpy as np
from gymnasium import spaces


class MemoryCueEnv(gymnasium.Env):
    def __init__(self, delay: int = 6):
        self.delay = delay
        self.observation_space = spaces.Box(0.0, 1.0, (3,), np.float32)
        self.action_space = spaces.Discrete(2)
        self._cue = 0
        self._t = 0

    def _observation(self) -> np.ndarray:
        obs = np.zeros(3, np.float32)
        if self._t == 0:
            obs[self._cue] = 1.0
        elif self._t == self.delay + 1:
            obs[2] = 1.0
        return obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._cue = int(self.np_random.integers(2))
        self._t = 0
        return self._observation(), {}

    def step(self, action):
        if self._t == self.delay + 1:
            reward = 1.0 if int(action) == self._cue else -1.0
            return self._observation(), reward, True, False, {}
        self._t += 1
        return self._observation(), 0.0, False, False, {}


gymnasium.register("MemoryCue-v0", entry_point=MemoryCueEnv)
