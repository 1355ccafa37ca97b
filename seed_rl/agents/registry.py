"""The agents by name: ``--agent`` -> the builder that makes it (see ``seed_rl/agents/builder.py``)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from seed_rl.agents.builder import AgentBuilder, BuiltAgent, RunShape
from seed_rl.agents.frame_stacking import FrameStackingAgent
from seed_rl.agents.impala.builder import ImpalaBuilder
from seed_rl.agents.r2d2.builder import R2D2Builder
from seed_rl.core.agent import Agent
from seed_rl.envs import EnvSpec

__all__ = ["AGENTS", "BUILDERS", "BuiltAgent", "RunShape", "agent_of_config", "build", "build_for_evaluation",
           "builder", "config_class"]

BUILDERS: dict[str, AgentBuilder] = {b.name: b for b in (ImpalaBuilder(), R2D2Builder())}
AGENTS = tuple(BUILDERS)


def builder(name: str) -> AgentBuilder:
    try:
        return BUILDERS[name]
    except KeyError:
        raise ValueError(f"unknown --agent={name!r}; choose one of {', '.join(AGENTS)}") from None


def config_class(name: str) -> type:
    """The config dataclass of agent ``name``."""
    return builder(name).config_class


def agent_of_config(config_cls: type) -> str:
    """The agent name whose config dataclass is ``config_cls``."""
    return next(name for name, b in BUILDERS.items() if b.config_class is config_cls)


def _stacking(agent: Agent, spec: EnvSpec) -> Agent:
    """``agent`` (built for ``spec.for_model()``) taking the single observations ``spec`` describes."""
    if spec.frame_stack == 1:
        return agent
    return FrameStackingAgent(agent, spec.frame_stack, spec.observation_shape, spec.observation_dtype)


def build(name: str, config: Any, spec: EnvSpec, device: torch.device, run: RunShape) -> BuiltAgent:
    """Agent ``name`` for training on ``spec``'s environment, stacking its frames on the learner if it asks."""
    built = builder(name).build(config, spec.for_model(), device, run)
    return dataclasses.replace(built, agent=_stacking(built.agent, spec))


def build_for_evaluation(name: str, config: Any, spec: EnvSpec, device: torch.device, epsilon: float) -> Agent:
    """Agent ``name`` to load trained weights into and play one environment of ``spec``."""
    return _stacking(builder(name).build_for_evaluation(config, spec.for_model(), device, epsilon), spec)
