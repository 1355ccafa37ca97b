"""Builds R2D2: the recurrent Q-learning agent, its prioritized sequence replay and its overlapping sequences."""

from __future__ import annotations

import torch

from seed_rl.agents.builder import BuiltAgent, RunShape
from seed_rl.agents.r2d2.agent import R2D2Agent
from seed_rl.agents.r2d2.config import R2D2Config
from seed_rl.agents.r2d2.replay_data import ReplayData
from seed_rl.core.agent import Agent
from seed_rl.core.unroll import UnrollShape
from seed_rl.envs import EnvSpec
from seed_rl.replay.prioritized import PrioritizedReplay


def prefetches(setting: str, device: torch.device) -> bool:
    """Whether the replay draws the next batch on a worker thread (``--prefetch_batches``)."""
    return setting == "on" or (setting == "auto" and device.type != "cpu")


class R2D2Builder:
    name = "r2d2"
    config_class = R2D2Config
    # The replay ratio holds the actors to the learner's updates: in the 2-core Pong run each actor
    # process used ~10% of a core while the learner used one.
    learner_bound = True

    def unroll_shape(self, config: R2D2Config) -> UnrollShape:
        # A sequence (burn-in + unroll + bootstrap) starts every sequence_period steps.
        return UnrollShape(config.sequence_length, overlap=config.sequence_length - config.sequence_period)

    def build(self, config: R2D2Config, spec: EnvSpec, device: torch.device, run: RunShape) -> BuiltAgent:
        agent = R2D2Agent(spec, config, device, run.total_envs, precision=run.precision, ranks=run.ranks,
                          num_eval_envs=run.num_eval_envs)
        # Several learner ranks: each holds a shard of the replay and samples its share of every batch.
        shards = run.ranks.world_size
        batch_size = run.ranks.shard(config.batch_size, "--batch_size")
        unroll = self.unroll_shape(config)
        replay = PrioritizedReplay(
            -(-config.replay_capacity // shards), config.priority_exponent, config.importance_sampling_exponent,
            seed=run.seed + run.ranks.rank,  # each shard draws its own samples
        )
        data = ReplayData(
            replay,
            batch_size=batch_size,
            replay_ratio=config.replay_ratio,
            min_size=-(-config.min_replay_size // shards),
            trained_steps_per_sequence=config.unroll_length,
            new_steps_per_sequence=config.sequence_period,
            checkpoint_contents=config.checkpoint_replay,
            initial_priority=agent.insertion_priority if config.initial_priority == "td" else None,
            sequence_overlap=unroll.overlap,  # the steps consecutive sequences share are stored once
            ranks=run.ranks,
            prefetch=prefetches(config.prefetch_batches, device),
        )
        return BuiltAgent(agent, data, unroll, batch_size)

    def build_for_evaluation(self, config: R2D2Config, spec: EnvSpec, device: torch.device, epsilon: float) -> Agent:
        agent = R2D2Agent(spec, config, device, total_envs=1)
        agent.epsilons = torch.tensor([epsilon], dtype=torch.float64, device=device)
        return agent
