"""The run configuration a checkpoint carries: which agent on which environment, with which settings.

Training writes it (:meth:`RunConfig.to_dict`, a plain dict under the
checkpoint's ``"run_config"`` key); a resumed run checks that it continues the
same run (:meth:`RunConfig.check_resumes`); evaluation rebuilds the agent and
its environment from it (:meth:`RunConfig.from_checkpoint`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from seed_rl.agents import registry
from seed_rl.config.flags import dataclass_from_dict
from seed_rl.envs import EnvConfig
from seed_rl.exits import first_line


class CheckpointMismatch(ValueError):
    """The logdir holds a checkpoint of a different run."""


class InvalidCheckpoint(ValueError):
    """A file that is not a checkpoint this seed_rl can use; the message is one line."""


# What a checkpoint holds besides the agent's own state, and its on-disk types.
_RUN_CONFIG_TYPES = {"agent": str, "env": str, "agent_config": dict, "env_config": dict}


@dataclass(frozen=True)
class RunConfig:
    agent: str  # --agent
    env: str  # --env
    agent_config: Any  # the agent's config dataclass (registry.config_class(agent))
    env_config: EnvConfig

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint's form: plain values only, so any later seed_rl can read it."""
        return {
            "agent": self.agent,
            "env": self.env,
            "agent_config": dataclasses.asdict(self.agent_config),
            "env_config": dataclasses.asdict(self.env_config),
        }

    def check_resumes(self, stored: dict[str, Any], path: str | os.PathLike) -> None:
        """Raises :class:`CheckpointMismatch` unless checkpoint ``path``, whose run config is ``stored``,
        was written by a run of the same agent on the same environment."""
        for key in ("agent", "env"):
            written, current = stored.get(key), getattr(self, key)
            if written != current:
                raise CheckpointMismatch(
                    f"{path} was written by a run with --{key}={written}, this run has --{key}={current}; "
                    f"use another --logdir or the same --{key}"
                )

    @classmethod
    def from_checkpoint(cls, state: Any, path: str | os.PathLike) -> RunConfig:
        """The run config of checkpoint ``state`` loaded from ``path``, its settings as dataclasses again.

        Raises:
          InvalidCheckpoint: ``state`` lacks the agent, frames or run config a checkpoint holds,
            names an agent this seed_rl does not know, or holds settings its config classes reject.
        """
        stored = state.get("run_config") if isinstance(state, dict) else None
        valid = (
            isinstance(stored, dict)
            and all(isinstance(stored.get(key), kind) for key, kind in _RUN_CONFIG_TYPES.items())
            and isinstance(state.get("agent"), dict)
            and isinstance(state.get("frames"), int)
        )
        if not valid:
            raise InvalidCheckpoint(
                f"{path} is not a seed_rl checkpoint (it lacks the agent, frames or run_config it should hold)"
            )
        if stored["agent"] not in registry.AGENTS:
            raise InvalidCheckpoint(
                f"{path} was written by agent {stored['agent']!r}, which this seed_rl does not know "
                f"(it knows {', '.join(registry.AGENTS)})"
            )
        try:
            env_config = dataclass_from_dict(EnvConfig, stored["env_config"])
        except (TypeError, ValueError) as e:
            raise InvalidCheckpoint(f"bad env_config in {path}: {first_line(e)}") from None
        try:
            agent_config = dataclass_from_dict(registry.config_class(stored["agent"]), stored["agent_config"])
        except (TypeError, ValueError) as e:  # a field renamed or a value the agent's config now rejects
            raise InvalidCheckpoint(f"cannot rebuild the agent of {path}: {first_line(e)}") from None
        return cls(stored["agent"], stored["env"], agent_config, env_config)
