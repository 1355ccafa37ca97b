"""Evaluation environments: acted on as the agent is evaluated, never trained on, reported apart."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from conftest import FAKE_SPEC, CountingAgent
from seed_rl.agents.r2d2.agent import R2D2Agent
from seed_rl.agents.r2d2.config import R2D2Config
from seed_rl.agents.r2d2.exploration import actor_epsilons
from seed_rl.core.agent import ActInputs
from seed_rl.core.eval_envs import EvalEnvs
from seed_rl.core.step import StepRequest, allocate_step
from seed_rl.learner.inference import InferenceEngine
from seed_rl.transport.streams import ActorStreams
from seed_rl.core.unroll import UnrollShape


def test_the_last_environments_evaluate_and_unnumbered_ones_train():
    split = EvalEnvs(total_envs=8, num_eval_envs=3)
    assert split.num_training_envs == 5 and split.first_eval_env == 5
    np.testing.assert_array_equal(split.is_eval(np.arange(10)), [0, 0, 0, 0, 0, 1, 1, 1, 0, 0])
    assert split.training_envs_of(4, 4) == 1
    assert not EvalEnvs(8).is_eval(np.arange(8)).any()


@pytest.mark.parametrize("count", [-1, 8, 9])
def test_eval_envs_that_leave_no_training_env_are_refused(count):
    with pytest.raises(ValueError, match="--num_eval_envs"):
        EvalEnvs(total_envs=8, num_eval_envs=count)


def _step(first_env: int, num_envs: int, stream: int, t: int, done: bool = False) -> StepRequest:
    step = allocate_step(num_envs, FAKE_SPEC.observation_shape, FAKE_SPEC.observation_dtype)
    step["observation"][:] = np.arange(num_envs)[:, None] + 100 * t  # env k, step t: value k + 100 t
    step["done"][:] = done
    return StepRequest(stream, first_env, step)


def test_evaluation_steps_never_reach_the_trajectories():
    # Two actors of 4 environments; the last 3 of the 8 evaluate (actor 1's environments 1..3).
    unrolls = []
    engine = InferenceEngine(CountingAgent(), UnrollShape(4), lambda batch: unrolls.extend(batch.unrolls()), threading.Lock(),
                             eval_envs=EvalEnvs(8, 3))
    for t in range(8):
        actions = engine([_step(0, 4, 0, t, done=t == 0), _step(4, 4, 1, t, done=t == 0)])
        assert [len(a) for a in actions] == [4, 4]  # every environment is still served
    # Unrolls of 3 + 1 steps overlapping by one: 2 per training environment in 8 steps, none from evaluation.
    assert len(unrolls) == 5 * 2
    env_of = [int(u.steps["observation"][0, 0]) % 100 for u in unrolls]  # k of "k + 100 t"
    assert sorted(env_of) == [0, 0, 0, 0, 1, 1, 2, 2, 3, 3]  # actor 0's k = 0..3 and actor 1's k = 0


def test_episodes_of_evaluation_environments_are_reported_apart():
    training, evaluation = [], []
    streams = ActorStreams("FakeEnv-v0", batcher=None, engine=None,
                           on_episodes=lambda r, l: training.append((r.tolist(), l.tolist())),
                           eval_envs=EvalEnvs(8, 2),
                           on_eval_episodes=lambda r, l: evaluation.append((r.tolist(), l.tolist())))
    stream = streams.open("1", "test")  # actor 1 of 4 environments: global 4..7, of which 6 and 7 evaluate
    stream._first_env_index = 4
    done = np.array([True, False, True, True])  # environments 4, 6, 7 ended, reported in that order
    stream._report_episodes(np.array([1.0, 2.0, 3.0], np.float32), np.array([10, 20, 30], np.int32), done)
    assert training == [([1.0], [10])]
    assert evaluation == [([2.0, 3.0], [20, 30])]


def test_r2d2_acts_greedily_at_eval_epsilon_on_evaluation_environments():
    spec = FAKE_SPEC
    config = R2D2Config(lstm_size=8, head_size=8, eval_epsilon=0.0, epsilon_base=1.0, epsilon_alpha=0.0)
    agent = R2D2Agent(spec, config, torch.device("cpu"), total_envs=6, num_eval_envs=2)
    # Training environments explore over their own 4 ids (epsilon 1 here: always random).
    np.testing.assert_allclose(agent.epsilons.numpy(), actor_epsilons(4, 1.0, 0.0).numpy())
    batch = 600
    env_index = torch.arange(batch) % 6
    inputs = ActInputs(torch.randn(batch, 3), torch.zeros(batch), torch.ones(batch, dtype=torch.bool), env_index)
    result = agent.act(inputs, agent.initial_core_state(batch))
    greedy = result.outputs["q"].argmax(-1)
    evaluation = env_index >= 4
    assert torch.equal(result.action[evaluation], greedy[evaluation])
    assert (result.action[~evaluation] != greedy[~evaluation]).float().mean() > 0.5  # uniform over 5 actions
