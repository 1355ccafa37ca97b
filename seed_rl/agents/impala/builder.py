"""Builds IMPALA: the actor-critic agent and on-policy batches of unrolls."""

from __future__ import annotations

import torch

from seed_rl.agents.builder import BuiltAgent, RunShape
from seed_rl.agents.impala.agent import ImpalaAgent
from seed_rl.agents.impala.config import ImpalaConfig
from seed_rl.core.agent import Agent
from seed_rl.core.training_data import OnPolicyData
from seed_rl.core.unroll import UnrollShape
from seed_rl.envs import EnvSpec


class ImpalaBuilder:
    name = "impala"
    config_class = ImpalaConfig
    learner_bound = False  # each unroll is trained on once: the actors' frames limit it

    def unroll_shape(self, config: ImpalaConfig) -> UnrollShape:
        # Consecutive unrolls share one step: the last one bootstraps the next.
        return UnrollShape(config.unroll_length + 1, overlap=1, life_loss_ends_episode=config.life_loss_ends_episode)

    def build(self, config: ImpalaConfig, spec: EnvSpec, device: torch.device, run: RunShape) -> BuiltAgent:
        frames_per_train_step = config.batch_size * config.unroll_length * run.frames_per_step
        # One update sees the global batch; with several learner ranks each trains on its share.
        shard = run.ranks.shard(config.batch_size, "--batch_size")
        agent = ImpalaAgent(
            spec, config, device, run.total_environment_frames // max(1, frames_per_train_step), precision=run.precision,
            ranks=run.ranks,
        )
        return BuiltAgent(agent, OnPolicyData(shard), self.unroll_shape(config), shard)

    def build_for_evaluation(self, config: ImpalaConfig, spec: EnvSpec, device: torch.device, epsilon: float) -> Agent:
        return ImpalaAgent(spec, config, device, total_train_steps=1)  # samples from its policy; no epsilon
