"""How far an agent's first updates move each part of its network, on real frames, without a training run.

  .venv/bin/python tools/update_ratios.py --agent=r2d2 --env=atari:Pong
  .venv/bin/python tools/update_ratios.py --agent=r2d2 --env=atari:Pong --set adam_epsilon=1e-3
  .venv/bin/python tools/update_ratios.py --agent=impala --env=atari:Pong

Builds the agent as ``seed_rl.train`` would on a CPU learner (the agent's
defaults under the family's preset; ``--set NAME=VALUE`` overrides a field,
as a flag would), plays ``--batches`` batches of real frames with the agent's
own acting (past the first ``--warmup`` steps of each episode), then applies
``--updates`` default updates, cycling over those batches. Printed per part of
the network (torso, core, heads), after the first update and after the last
(see ``seed_rl/core/update_stats.py``): the update's norm over the weights',
the update over the nominal step (1: every entry moved by the learning rate),
the fraction of entries whose second-moment root is below the optimizer's
epsilon, and the per-entry gradient RMS of the first update.
"""

from __future__ import annotations

import argparse
import ast
import threading

import numpy as np
import torch

from seed_rl.agents import registry
from seed_rl.bench.rollouts import collect_batch
from seed_rl.bench.train_batches import preset_config
from seed_rl.config import presets
from seed_rl.core.update_stats import PARTS, network_part, snapshot, update_stats
from seed_rl.core.precision import resolve_precision
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
            seed: int) -> list[dict[str, float]]:
    """The stats of update 1 and of update ``updates`` (with the first update's gradient RMS)."""
    family = parse_env_name(env_name)[0].preset_family(probe_spec(env_name, seed).observation_shape)
    env_config = EnvConfig(**{k: s.value for k, s in presets.env_preset(family, agent_name).items()})
    spec = probe_spec(env_name, seed, env_config)
    config = preset_config(agent_name, env_name, spec, "cpu", **overrides)
    device = torch.device("cpu")
    precision = resolve_precision("auto", device, images=len(spec.observation_shape) == 3)  # as seed_rl.train
    torch.manual_seed(seed)
    run = registry.RunShape(total_frames=10**9, frames_per_step=1, total_envs=config.batch_size, seed=seed,
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent", default="r2d2")
    parser.add_argument("--env", default="atari:Pong")
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE", help="config fields to override")
    parser.add_argument("--updates", type=int, default=12)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=300, help="steps played before a batch starts (Pong: points)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    overrides = parse_overrides(args.set)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    first, last = measure(args.agent, args.env, overrides, args.updates, args.batches, args.warmup, args.seed)
    shown = " ".join(f"--{k}={v}" for k, v in overrides.items()) or "(the preset as it is)"
    print(f"{args.agent} on {args.env}, CPU preset {shown}; {args.updates} updates over {args.batches} real batches")
    print(f"{'part':<6} {'grad RMS':>9} | {'update/weights':>14} {'/ nominal':>9} {'below eps':>9} | "
          f"{'update/weights':>14} {'/ nominal':>9} {'below eps':>9}")
    print(f"{'':<6} {'update 1':>9} | {'update 1':^34} | {f'update {args.updates}':^34}")
    for part in PARTS:
        def cells(row):
            return (f"{row.get(f'update/{part}_ratio', float('nan')):>14.2e} "
                    f"{row.get(f'update/{part}_nominal', float('nan')):>9.3f} "
                    f"{row.get(f'update/{part}_below_eps', float('nan')):>9.1%}")
        print(f"{part:<6} {first.get(f'grad_rms/{part}', float('nan')):>9.2e} | {cells(first)} | {cells(last)}")


if __name__ == "__main__":
    main()
