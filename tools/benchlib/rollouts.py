"""Real trajectories for update-size checks: an agent's own acting on real environments.

``collect_batch`` steps ``B`` environments ``T + 1`` times with ``agent.act``
and returns the time-major batch the learner would train on, with the same
conventions as the actor and the trajectory store: step ``t`` holds the
observation, the reward and done that arrived with it, and the action chosen
on it.
"""

from __future__ import annotations

import numpy as np
import torch

from seed_rl.core.agent import ActInputs


def collect_batch(agent, envs: list, steps: int, seed: int = 0, warmup: int = 0) -> dict:
    """A ``[steps, B]`` time-major batch from ``agent.act`` on ``envs`` (auto-reset).

    The first ``warmup`` steps are played but not kept (e.g. to get past the
    reward-free start of Pong, so that the batch holds points scored).
    """
    batch_size = len(envs)
    observations = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
    rewards = np.zeros(batch_size, np.float32)
    dones = np.ones(batch_size, bool)
    state = agent.initial_core_state(batch_size)
    columns: dict[str, list] = {"observation": [], "reward": [], "done": [], "truncated": [], "action": []}
    outputs: dict[str, list] = {}
    truncated = np.zeros(batch_size, bool)
    for step in range(warmup + steps):
        if step == warmup:
            initial_state = tuple(s.clone() for s in state)
        inputs = ActInputs(
            torch.from_numpy(observations), torch.from_numpy(rewards), torch.from_numpy(dones),
            torch.arange(batch_size),
        )
        result = agent.act(inputs, state)
        state = result.core_state
        actions = result.action.numpy()
        if step >= warmup:
            for name, value in (("observation", observations), ("reward", rewards), ("done", dones),
                                ("truncated", truncated), ("action", actions)):
                columns[name].append(np.array(value))
            for name, value in result.outputs.items():
                outputs.setdefault(name, []).append(value.numpy().copy())
        next_obs, rewards, dones, truncated = [], np.zeros(batch_size, np.float32), np.zeros(batch_size, bool), \
            np.zeros(batch_size, bool)
        for i, env in enumerate(envs):
            obs, reward, term, trunc, _ = env.step(int(actions[i]))
            rewards[i], dones[i], truncated[i] = reward, term or trunc, trunc
            if term or trunc:
                obs, _ = env.reset()
            next_obs.append(obs)
        observations = np.stack(next_obs)
    batch = {name: torch.from_numpy(np.stack(values)) for name, values in columns.items()}
    batch["agent_outputs"] = {name: torch.from_numpy(np.stack(values)) for name, values in outputs.items()}
    batch["initial_core_state"] = initial_state
    return batch
