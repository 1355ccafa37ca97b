"""Builds an agent by name from the command-line flags."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from absl import flags

from seed_rl.config_flags import dataclass_from_flags, define_dataclass_flags
from seed_rl.core.agent import Agent
from seed_rl.core.data import OnPolicyData, TrainingData
from seed_rl.envs import EnvSpec


@dataclass
class BuiltAgent:
    agent: Agent
    data: TrainingData
    unroll_length: int
    unroll_overlap: int
    batch_size: int
    config: dict[str, Any]


def define_agent_flags() -> None:
    from seed_rl.agents.impala.config import ImpalaConfig
    from seed_rl.agents.r2d2.config import R2D2Config

    define_dataclass_flags(ImpalaConfig)
    define_dataclass_flags(R2D2Config)


AGENTS = ("impala", "r2d2")


def agent_of_config(config_cls: type) -> str:
    """The agent name whose config dataclass is ``config_cls``."""
    return next(name for name in AGENTS if config_class(name) is config_cls)


def config_class(name: str) -> type:
    """The config dataclass of agent ``name``."""
    if name == "impala":
        from seed_rl.agents.impala.config import ImpalaConfig

        return ImpalaConfig
    if name == "r2d2":
        from seed_rl.agents.r2d2.config import R2D2Config

        return R2D2Config
    raise ValueError(f"unknown --agent={name!r}; choose one of {', '.join(AGENTS)}")


def build_agent(
    name: str,
    spec: EnvSpec,
    device: torch.device,
    total_frames: int,
    frames_per_step: int,
    num_envs: int,
    seed: int = 0,
    flag_values=flags.FLAGS,
    preset: dict[str, Any] | None = None,
) -> BuiltAgent:
    """Builds ``name`` from its config dataclass, overridden by ``preset``, then by the flags that were given.

    ``num_envs`` is the number of environments across all actors (R2D2's
    per-environment epsilons); ``frames_per_step`` converts agent steps to
    environment frames.
    """
    if name == "impala":
        from seed_rl.agents.impala.agent import ImpalaAgent

        config = dataclass_from_flags(config_class(name), flag_values, preset)
        frames_per_train_step = config.batch_size * config.unroll_length * frames_per_step
        agent = ImpalaAgent(spec, config, device, total_train_steps=total_frames // max(1, frames_per_train_step))
        data = OnPolicyData(config.batch_size)
        return BuiltAgent(agent, data, config.unroll_length, 1, config.batch_size, dataclasses.asdict(config))
    if name == "r2d2":
        from seed_rl.agents.r2d2.agent import R2D2Agent
        from seed_rl.agents.r2d2.replay_data import ReplayData
        from seed_rl.replay.prioritized import PrioritizedReplay

        config = dataclass_from_flags(config_class(name), flag_values, preset)
        agent = R2D2Agent(spec, config, device, num_envs)
        replay = PrioritizedReplay(
            config.replay_capacity, config.priority_exponent, config.importance_sampling_exponent, seed=seed
        )
        data = ReplayData(
            replay,
            batch_size=config.batch_size,
            replay_ratio=config.replay_ratio,
            min_size=config.min_replay_size,
            trained_steps_per_sequence=config.unroll_length,
            new_steps_per_sequence=config.sequence_period,
            checkpoint_contents=config.checkpoint_replay,
            initial_priority=agent.insertion_priority if config.initial_priority == "td" else None,
        )
        length = config.sequence_length - 1  # the builder emits length + 1 steps
        overlap = config.sequence_length - config.sequence_period
        return BuiltAgent(agent, data, length, overlap, config.batch_size, dataclasses.asdict(config))
    raise ValueError(f"unknown --agent={name!r}; choose one of {', '.join(AGENTS)}")
