"""How far an agent's first updates move each part of its network on real frames (``tools/update_ratios.py``).

The agent is built as ``seed_rl.train`` builds it (its defaults under the
family's preset, for a CPU or a GPU learner), plays real environments with its
own acting, and applies default updates to those batches; each update is
measured with :func:`seed_rl.learner.update_stats.update_stats`.
"""

from __future__ import annotations

import ast
import threading

import torch

from seed_rl.agents import registry
from benchlib.rollouts import collect_batch
from benchlib.train_batches import preset_config
from seed_rl.config import presets
from seed_rl.core.precision import learner_precision
from seed_rl.learner.update_stats import PARTS, network_part, snapshot, update_stats
from seed_rl.envs import EnvConfig, make_env, probe_spec
from seed_rl.envs.families import parse_env_name


def parse_overrides(items: list[str]) -> dict:
    overrides = {}
    for item in items:
        name, _, text = item.partition("=")
        try:
            overrides[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            overrides[name] = text
    return overrides


def real_batches(agent, env_name: str, env_config: EnvConfig, batches: int, steps: int, batch_size: int,
                 warmup: int, seed: int) -> list[dict]:
    """``batches`` time-major batches of ``steps`` x ``batch_size`` from the agent's own acting."""
    envs = [make_env(env_name, seed + i, env_config) for i in range(batches * batch_size)]
    try:
        batch = collect_batch(agent, envs, steps, seed=seed, warmup=warmup)
    finally:
        for env in envs:
            env.close()
    parts = []
    for k in range(batches):
        cut = slice(k * batch_size, (k + 1) * batch_size)
        part = {name: value[:, cut] for name, value in batch.items() if isinstance(value, torch.Tensor)}
        part["agent_outputs"] = {name: value[:, cut] for name, value in batch["agent_outputs"].items()}
        part["initial_core_state"] = tuple(s[cut] for s in batch["initial_core_state"])
        if hasattr(agent.config, "sequence_length"):  # R2D2: uniform importance weights
            part["importance_weights"] = torch.ones(batch_size)
        parts.append(part)
    return parts


def gradient_rms(agent, batch: dict) -> dict[str, float]:
    """Per part of the network: the RMS over entries of the first update's (clipped) gradient."""
    sums = {part: [0.0, 0] for part in PARTS}
    for name, p in agent.model.named_parameters():
        if p.grad is not None:
            s = sums[network_part(name)]
            s[0] += float(p.grad.double().pow(2).sum())
            s[1] += p.numel()
    return {part: (s[0] / s[1]) ** 0.5 for part, s in sums.items() if s[1]}


def measure(agent_name: str, env_name: str, overrides: dict, updates: int, batches: int, warmup: int,
            seed: int, preset: str = "cpu") -> list[dict[str, float]]:
    """The stats of update 1 and of update ``updates`` (with the first update's gradient RMS)."""
    family = parse_env_name(env_name)[0].preset_family(probe_spec(env_name, seed).observation_shape)
    env_config = EnvConfig(**{k: s.value for k, s in presets.env_preset(family, agent_name).items()})
    spec = probe_spec(env_name, seed, env_config)
    config = preset_config(agent_name, env_name, spec, "cpu" if preset == "cpu" else "cuda", **overrides)
    device = torch.device("cpu")
    precision = learner_precision("auto", device, spec.observation_shape)  # as seed_rl.train
    torch.manual_seed(seed)
    run = registry.RunShape(total_environment_frames=10**9, frames_per_step=1, total_envs=config.batch_size, seed=seed,
                            precision=precision)
    agent = registry.build(agent_name, config, spec, device, run).agent
    steps = config.sequence_length if hasattr(config, "sequence_length") else config.unroll_length + 1
    data = real_batches(agent, env_name, env_config, batches, steps, config.batch_size, warmup, seed)
    lock = threading.Lock()
    rows = []
    for k in range(updates):
        before = snapshot(agent.model)
        agent.train_step(data[k % len(data)], lock)
        if k == 0 or k == updates - 1:
            row = update_stats(agent.model, before, agent.optimizer)
            if k == 0:
                row.update({f"grad_rms/{part}": v for part, v in gradient_rms(agent, data[0]).items()})
            rows.append(row)
    return rows
