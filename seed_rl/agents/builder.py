"""What building an agent yields, and the interface each agent's builder implements (cf. Acme's builders)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

from seed_rl.core.agent import Agent
from seed_rl.core.eval_envs import EvalEnvs
from seed_rl.core.precision import FP32, Precision
from seed_rl.core.learner_ranks import SINGLE, LearnerRanks
from seed_rl.core.training_data import TrainingData
from seed_rl.core.unroll import UnrollShape
from seed_rl.envs import EnvSpec


@dataclass
class BuiltAgent:
    """An agent with the training data store it learns from and the unrolls the learner cuts for it."""

    agent: Agent
    data: TrainingData
    unroll: UnrollShape
    batch_size: int  # unrolls per update on this learner rank


@dataclass(frozen=True)
class RunShape:
    """The facts of a training run an agent's construction depends on."""

    total_environment_frames: int  # the run's budget (--total_environment_frames)
    frames_per_step: int  # environment frames per agent step (Atari frame skip)
    total_envs: int  # environments across all actors (R2D2's per-environment epsilons)
    seed: int = 0
    precision: Precision = FP32  # of the learner's forward passes (--precision)
    ranks: LearnerRanks = SINGLE  # the learner ranks this one trains beside (torchrun); each gets batch / N
    num_eval_envs: int = 0  # the last environments of total_envs evaluate instead of train (core/eval_envs.py)

    @property
    def eval_envs(self) -> EvalEnvs:
        return EvalEnvs(self.total_envs, self.num_eval_envs)


class AgentBuilder(Protocol):
    """Builds one agent from its config dataclass; never reads command-line flags."""

    name: str
    config_class: type
    # Whether the learner's updates, not the actors, limit a run: its actors then wait on the learner (R2D2's
    # replay ratio) and a CPU learner takes every core (seed_rl/learner/build.py, learner_threads).
    learner_bound: bool

    def unroll_shape(self, config: Any) -> UnrollShape:
        """The unrolls the learner cuts for this agent (evaluation reads its episode rule from it)."""

    def build(self, config: Any, spec: EnvSpec, device: torch.device, run: RunShape) -> BuiltAgent:
        """The agent for training, its data store and :meth:`unroll_shape`."""

    def build_for_evaluation(self, config: Any, spec: EnvSpec, device: torch.device, epsilon: float) -> Agent:
        """The agent alone, to load trained weights into and play one environment."""
