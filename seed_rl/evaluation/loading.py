"""Loads the newest checkpoint of a training run: the agent with its trained weights and a fresh environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium
import torch

from seed_rl.agents import registry
from seed_rl.core.agent import Agent
from seed_rl.envs import EnvConfig, env_spec, frame_stack, make_env
from seed_rl.evaluation.errors import EvaluationError
from seed_rl.exits import first_line
from seed_rl.learner import checkpoint
from seed_rl.learner.checkpoint_loading import CheckpointReadError, newest_readable
from seed_rl.learner.run_config import InvalidCheckpoint, RunConfig


@dataclass
class LoadedRun:
    """A trained agent and what is needed to rebuild its environment."""

    agent: Agent
    agent_name: str
    agent_config: Any  # the agent's config dataclass, as trained
    env_name: str
    env_config: EnvConfig
    checkpoint: Path
    frames: int  # environment frames the checkpoint was trained on


def _read_checkpoint(logdir: Path) -> tuple[Path, dict]:
    """The newest readable checkpoint (a damaged newer one is named in a warning and left where it is)."""
    if not logdir.is_dir():
        raise EvaluationError(f"no such logdir {logdir}")
    try:
        # The replay is not needed to evaluate: a checkpoint whose replay alone is damaged is used.
        loaded = newest_readable(logdir, damaged_replay="empty", move_aside=False)
    except CheckpointReadError as e:
        raise EvaluationError(f"{e}") from None
    if loaded is None:
        raise EvaluationError(
            f"no checkpoint in {checkpoint.checkpoint_dir(logdir)}; "
            f"train first with python -m seed_rl.train --logdir={logdir}"
        )
    return loaded.path, loaded.state


def load_run(
    logdir: str | os.PathLike, seed: int = 0, device: str = "cpu", epsilon: float = 0.001
) -> tuple[LoadedRun, gymnasium.Env]:
    """Loads the newest checkpoint in ``logdir``: the agent with its trained weights and a fresh env.

    ``epsilon`` is R2D2's exploration rate while evaluating (IMPALA ignores it).

    Raises:
      EvaluationError: no logdir or checkpoint, a foreign file, an unknown agent, weights that do not fit.
      EnvError: the environment cannot be built.
    """
    torch_device = torch.device(device)
    path, state = _read_checkpoint(Path(logdir))
    try:
        run_config = RunConfig.from_checkpoint(state, path)
    except InvalidCheckpoint as e:
        raise EvaluationError(str(e)) from None
    env = make_env(run_config.env, seed, run_config.env_config)
    try:
        spec = env_spec(env, frame_stack(run_config.env, run_config.env_config))
        try:
            agent = registry.build_for_evaluation(run_config.agent, run_config.agent_config, spec, torch_device, epsilon)
            agent.load_for_evaluation(state["agent"])
        except KeyError:  # an agent state without the weights
            raise EvaluationError(
                f"{path} is not a seed_rl checkpoint (it lacks the agent, frames or run_config it should hold)"
            ) from None
        except (TypeError, ValueError, RuntimeError) as e:  # a config the agent rejects, weights of another shape
            raise EvaluationError(f"cannot rebuild the agent of {path}: {first_line(e)}") from None
    except BaseException:
        env.close()
        raise
    run = LoadedRun(agent, run_config.agent, run_config.agent_config, run_config.env, run_config.env_config, path,
                    state["frames"])
    return run, env
