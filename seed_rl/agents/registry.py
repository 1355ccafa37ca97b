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

    define_dataclass_flags(ImpalaConfig)


AGENTS = ("impala",)


def build_agent(
    name: str, spec: EnvSpec, device: torch.device, total_frames: int, frames_per_step: int, flag_values=flags.FLAGS
) -> BuiltAgent:
    if name == "impala":
        from seed_rl.agents.impala.agent import ImpalaAgent
        from seed_rl.agents.impala.config import ImpalaConfig

        config = dataclass_from_flags(ImpalaConfig, flag_values)
        config.validate()
        frames_per_train_step = config.batch_size * config.unroll_length * frames_per_step
        agent = ImpalaAgent(spec, config, device, total_train_steps=total_frames // frames_per_train_step)
        data = OnPolicyData(config.batch_size)
        return BuiltAgent(agent, data, config.unroll_length, 1, config.batch_size, dataclasses.asdict(config))
    raise ValueError(f"unknown --agent={name!r}; choose one of {', '.join(AGENTS)}")
