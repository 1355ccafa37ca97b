"""The agents by name: ``--agent`` -> the builder that makes it (see ``seed_rl/agents/builder.py``)."""

from __future__ import annotations

from seed_rl.agents.builder import AgentBuilder, BuiltAgent, RunShape
from seed_rl.agents.impala.builder import ImpalaBuilder
from seed_rl.agents.r2d2.builder import R2D2Builder

__all__ = ["AGENTS", "BUILDERS", "BuiltAgent", "RunShape", "agent_of_config", "builder", "config_class"]

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
