"""One unroll contract: each agent's builder makes it, and the flag --unroll_length keeps its one meaning."""

from __future__ import annotations

import pytest
import torch

from seed_rl.agents import registry
from seed_rl.agents.impala.config import ImpalaConfig
from seed_rl.agents.r2d2.config import R2D2Config
from seed_rl.core.unroll import UnrollShape
from seed_rl.envs import EnvSpec

SPEC = EnvSpec(observation_shape=(4,), observation_dtype="float32", num_actions=2)
RUN = registry.RunShape(total_environment_frames=10**6, frames_per_step=1, total_envs=4)


@pytest.mark.parametrize(
    "agent, config, expected",
    [
        # IMPALA: --unroll_length steps and the bootstrap step, shared with the next unroll.
        ("impala", ImpalaConfig(unroll_length=20, torso="mlp"), UnrollShape(21, 1, life_loss_ends_episode=True)),
        ("impala", ImpalaConfig(unroll_length=5, torso="mlp", life_loss_ends_episode=False), UnrollShape(6, 1)),
        # R2D2: burn-in, --unroll_length and the bootstrap step; a sequence starts every sequence_period steps.
        ("r2d2", R2D2Config(burn_in=40, unroll_length=80, sequence_period=40, lstm_size=8, head_size=8), UnrollShape(121, 81)),
        ("r2d2", R2D2Config(burn_in=10, unroll_length=20, sequence_period=10, lstm_size=8, head_size=8), UnrollShape(31, 21)),
    ],
)
def test_the_builder_makes_the_shape_the_learner_cuts(agent, config, expected):
    assert registry.builder(agent).unroll_shape(config) == expected
    assert registry.build(agent, config, SPEC, torch.device("cpu"), RUN).unroll == expected


def test_new_steps_are_those_not_shared_with_the_previous_unroll():
    assert UnrollShape(21, 1).new_steps == 20
    assert UnrollShape(121, 81).new_steps == 40


@pytest.mark.parametrize("steps, overlap", [(1, 0), (0, 0), (5, 5), (5, -1)])
def test_an_impossible_shape_is_refused(steps, overlap):
    with pytest.raises(ValueError):
        UnrollShape(steps, overlap)
