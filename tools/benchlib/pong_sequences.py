"""R2D2 sequences cut from real Pong frames, in the replay's format.

Shared by ``tools/bench_replay_memory.py`` and ``tools/bench_replay_prefetch.py``.
"""

from __future__ import annotations

import numpy as np

from seed_rl.agents.r2d2.config import R2D2Config
from seed_rl.core.unroll import Unroll

CONFIG = R2D2Config()
LENGTH = CONFIG.sequence_length  # 121 steps
PERIOD = CONFIG.sequence_period  # a new sequence every 40 steps
OVERLAP = LENGTH - PERIOD
NUM_ACTIONS = 6


def record_pong(steps: int, envs: int, seed: int) -> list[np.ndarray]:
    """``steps`` real Pong frames, ``[n, 84, 84]`` uint8 per environment, from a random policy."""
    from seed_rl.envs import make_env

    recordings = []
    for e in range(envs):
        env = make_env("atari:Pong", seed + e)
        env.action_space.seed(seed + e)
        observation, _ = env.reset(seed=seed + e)
        frames = np.empty((steps // envs, *observation.shape[1:]), np.uint8)  # no per-step arrays left as free heap
        for t in range(len(frames)):
            frames[t] = observation[-1]
            observation, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                observation, _ = env.reset()
        env.close()
        recordings.append(frames)
    return recordings



class Sequences:
    """R2D2 sequences cut from the recordings, with deterministic small fields."""

    def __init__(self, recordings: list[np.ndarray], seed: int):
        self.recordings = recordings
        self.rng = np.random.default_rng(seed)

    def _small(self, start: int) -> dict[str, np.ndarray]:
        t = np.arange(start, start + LENGTH)
        return {"reward": np.where(t % 97 == 0, 1.0, 0.0).astype(np.float32), "done": t % 1000 == 0,
                "truncated": np.zeros(LENGTH, bool), "action": t % NUM_ACTIONS}

    def _state(self) -> tuple[np.ndarray, ...]:
        return (self.rng.normal(size=512).astype(np.float32), self.rng.normal(size=512).astype(np.float32),
                np.int64(self.rng.integers(NUM_ACTIONS)))

    def new(self, env: int, start: int, lineage: int, index: int) -> Unroll:
        """Single frames (views into the recording), the 3 frames before in the state."""
        frames = self.recordings[env]
        before = frames[max(0, start - 3) : start]
        before = np.concatenate([np.repeat(frames[start : start + 1], 3 - len(before), 0), before])
        return Unroll(steps={"observation": frames[start : start + LENGTH, None], **self._small(start)},
                      agent_outputs={}, initial_core_state=(before[:, None], *self._state()),
                      lineage=lineage, index=index)

    def lineages(self, count: int):
        """``count`` sequences: lineages that walk the recordings from random starts."""
        lineage = made = 0
        while made < count:
            env = lineage % len(self.recordings)
            start = int(self.rng.integers(0, PERIOD))
            index = 0
            while made < count and start + LENGTH <= len(self.recordings[env]):
                yield self.new(env, start, lineage, index)
                start, index, made = start + PERIOD, index + 1, made + 1
            lineage += 1
