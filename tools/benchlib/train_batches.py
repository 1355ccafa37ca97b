"""An agent as a run would build it, and a synthetic training batch of the shape it trains on.

For timing and precision checks of one ``train_step`` without actors: the
config is the agent's defaults under the environment family's preset (as
``seed_rl.train`` resolves them), the batch holds random observations of the
environment's shape and dtype.
"""

from __future__ import annotations

import torch

from seed_rl.agents import registry
from seed_rl.config import presets
from seed_rl.core.precision import FP32, Precision
from seed_rl.envs import EnvSpec
from seed_rl.envs.families import parse_env_name


def preset_config(agent: str, env_name: str, spec: EnvSpec, device_type: str = "cpu", **overrides):
    """``agent``'s config for ``env_name`` as ``seed_rl.train`` would resolve it with no flags but ``overrides``."""
    config_cls = registry.config_class(agent)
    family = parse_env_name(env_name)[0].preset_family(spec.observation_shape)
    values = presets.apply_preset(config_cls, presets.preset(family, agent).resolve(device_type), set(overrides))
    return config_cls(**{**values, **overrides})


def build_agent(agent: str, config, spec: EnvSpec, device: torch.device, precision: Precision = FP32, seed: int = 0):
    """The agent alone (no replay), with weights from ``seed``."""
    torch.manual_seed(seed)
    run = registry.RunShape(total_environment_frames=10**9, frames_per_step=1, total_envs=32, seed=seed, precision=precision)
    return registry.build(agent, config, spec, device, run).agent


def random_observations(spec: EnvSpec, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    full = (*shape, *spec.observation_shape)
    if spec.observation_dtype == "uint8":
        return torch.randint(0, 256, full, dtype=torch.uint8, generator=generator)
    return torch.randn(full, generator=generator).to(getattr(torch, spec.observation_dtype))


def training_batch(agent, spec: EnvSpec, seed: int = 0) -> dict:
    """A time-major batch of the agent's training shape: ``T + 1`` IMPALA steps, or R2D2's whole sequences."""
    cfg = agent.config
    g = torch.Generator().manual_seed(seed)
    r2d2 = hasattr(cfg, "sequence_length")
    steps = cfg.sequence_length if r2d2 else cfg.unroll_length + 1
    batch_size = cfg.batch_size
    batch = {
        "observation": random_observations(spec, (steps, batch_size), g),
        "reward": torch.randn(steps, batch_size, generator=g),
        "done": torch.rand(steps, batch_size, generator=g) < 0.02,
        "action": torch.randint(spec.num_actions, (steps, batch_size), generator=g),
        "initial_core_state": agent.initial_core_state(batch_size),
    }
    if r2d2:
        batch["importance_weights"] = torch.rand(batch_size, generator=g) + 0.5
    else:
        logits = 0.1 * torch.randn(steps, batch_size, spec.num_actions, generator=g)
        batch["agent_outputs"] = {"policy_logits": logits}
    return {name: _to(value, agent.device) for name, value in batch.items()}


def _to(value, device: torch.device):
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    return tuple(_to(v, device) for v in value)


def batch_share(batch: dict, rank: int, ranks: int) -> dict:
    """Rank ``rank``'s slice of a time-major global batch (batch dim 1; 0 for core states and importance weights)."""

    def cut(value, dim: int):
        if isinstance(value, dict):
            return {k: cut(v, dim) for k, v in value.items()}
        if isinstance(value, tuple):
            return tuple(cut(v, 0) for v in value)
        size = value.shape[dim] // ranks
        return value.narrow(dim, rank * size, size)

    return {k: cut(v, 0 if k in ("initial_core_state", "importance_weights") else 1) for k, v in batch.items()}
