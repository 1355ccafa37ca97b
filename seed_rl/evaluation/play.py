"""Plays episodes with an agent exactly as the learner's inference path acts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import gymnasium
import numpy as np
import torch

from seed_rl.core.agent import ActInputs, Agent


@dataclass
class Episode:
    episode_return: float
    steps: int


def play(
    agent: Agent,
    env: gymnasium.Env,
    episodes: int,
    seed: int,
    on_episode: Callable[[int, Episode], None] | None = None,
    on_observation: Callable[[np.ndarray], None] | None = None,
    life_loss_ends_episode: bool = False,
) -> list[Episode]:
    """Plays ``episodes`` episodes of ``env`` with ``agent``, as the learner's inference acts.

    The first reset is seeded with ``seed``. Each step gives the agent the
    observation with the reward and done flag it arrived with (``done``: the
    observation starts an episode), so recurrent state resets inside the agent
    where it does during training. ``on_observation`` sees every observation of
    the first episode, the final one included. ``life_loss_ends_episode``: the
    agent sees a lost life as an episode's end, as it did in training (IMPALA on
    Atari); the returns still count whole games.
    """
    device = agent.device
    core_state = tuple(s.to(device) for s in agent.initial_core_state(1))
    env_index = torch.zeros(1, dtype=torch.int64, device=device)
    observation, info = env.reset(seed=seed)
    lives = info.get("lives", 0)
    reward, done, starts_episode = 0.0, True, True
    results: list[Episode] = []
    episode_return, steps = 0.0, 0
    while len(results) < episodes:
        if on_observation is not None and not results:
            on_observation(observation)
        inputs = ActInputs(
            torch.from_numpy(np.asarray(observation)[None]).to(device),
            torch.tensor([reward], dtype=torch.float32, device=device),
            torch.tensor([starts_episode], dtype=torch.bool, device=device),
            env_index,
        )
        result = agent.act(inputs, core_state)
        core_state = result.core_state
        observation, reward, terminated, truncated, info = env.step(int(result.action[0]))
        reward = float(reward)
        episode_return += reward
        steps += 1
        done = bool(terminated or truncated)
        life_lost = info.get("lives", 0) < lives
        lives = info.get("lives", 0)
        starts_episode = done or (life_loss_ends_episode and life_lost)
        if done:
            if on_observation is not None and not results:
                on_observation(observation)
            results.append(Episode(episode_return, steps))
            if on_episode is not None:
                on_episode(len(results), results[-1])
            episode_return, steps = 0.0, 0
            if len(results) < episodes:
                observation, info = env.reset()
                lives = info.get("lives", 0)
    return results
