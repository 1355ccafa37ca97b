"""PopArt (seed_rl/agents/impala/popart.py) against references written from Hessel et al. 2019 / van Hasselt
et al. 2016: the statistics, output preservation, and one IMPALA update with PopArt."""

from __future__ import annotations

import copy
import math
import threading

import numpy as np
import pytest
import torch

from seed_rl.agents.impala import popart
from seed_rl.agents.impala.agent import ImpalaAgent
from seed_rl.agents.impala.config import ImpalaConfig
from test_update_scaling import VECTOR, _assert_same_update, _clip_global_norm, _impala_batch, _params, _rmsprop_reference
from test_vtrace import reference_vtrace

LOCK = threading.Lock()


def _direct_statistics(batches: list[np.ndarray], step_size: float) -> tuple[float, float]:
    """The debiased exponential averages of E[G] and E[G^2], written as the weighted sums they are."""
    k = len(batches)
    weights = [step_size * (1 - step_size) ** (k - 1 - i) for i in range(k)]
    total = sum(weights)
    mean = sum(w * b.mean() for w, b in zip(weights, batches)) / total
    mean_square = sum(w * (b**2).mean() for w, b in zip(weights, batches)) / total
    return mean, math.sqrt(mean_square - mean**2)


def test_statistics_are_the_debiased_moving_moments_of_the_targets():
    rng = np.random.default_rng(0)
    stats = popart.PopArtStatistics(step_size=0.1)
    assert [float(x) for x in stats.mean_and_scale()] == [0.0, 1.0]  # before any target: the identity
    head = torch.nn.Linear(3, 1)
    batches = []
    for i in range(12):
        batch = rng.normal(10.0 * i, 1.0 + i, size=(5, 4))
        batches.append(batch)
        stats.update(torch.from_numpy(batch).float(), head)
        mean, scale = stats.mean_and_scale()
        expected_mean, expected_scale = _direct_statistics(batches, 0.1)
        assert float(mean) == pytest.approx(expected_mean, rel=1e-6)
        assert float(scale) == pytest.approx(expected_scale, rel=1e-6)


def test_the_scale_is_clipped():
    stats = popart.PopArtStatistics(step_size=0.5)
    stats.update(torch.full((4,), 7.0), torch.nn.Linear(2, 1))
    assert float(stats.mean_and_scale()[1]) == popart.MIN_SCALE  # constant targets


@pytest.mark.parametrize("scale_of_targets", [1e-3, 1.0, 1e4])
def test_rescaling_preserves_the_unnormalized_outputs_exactly(scale_of_targets):
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 1)
    features = torch.randn(64, 8)
    stats = popart.PopArtStatistics(step_size=0.3)
    for i in range(5):
        before = stats.unnormalize(head(features)).detach().double()
        normalized_before = head(features).detach().clone()
        stats.update(scale_of_targets * (torch.randn(32) + 3 * i), head)
        after = stats.unnormalize(head(features)).detach().double()
        mean, scale = (abs(float(x)) for x in stats.mean_and_scale())
        # float32 weights: exact up to a few ulps of the largest magnitude involved.
        torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-6 * (mean + scale + float(before.abs().max())))
        assert not torch.allclose(head(features).detach(), normalized_before)


def test_impala_step_with_popart_is_the_reference_step():
    config = ImpalaConfig(torso="mlp", popart=True, popart_step_size=0.05)
    torch.manual_seed(0)
    agent = ImpalaAgent(VECTOR, config, torch.device("cpu"), total_train_steps=10**6)
    statistics = agent.model.value_statistics
    first_targets = 40.0 + 15.0 * torch.randn(64)
    statistics.update(first_targets, agent.model.baseline)  # statistics well away from (0, 1)
    batch = _impala_batch(5, 4)
    batch["reward"] = 30.0 * batch["reward"]
    config_like = ImpalaConfig()

    # The reference: V-trace on sigma * n(x) + mu, the baseline regressing (vs - mu) / sigma, advantages / sigma.
    model = copy.deepcopy(agent.model)
    mean, scale = (float(x) for x in statistics.mean_and_scale())
    logits, normalized, _ = model(batch["observation"], batch["done"], ())
    values = (normalized * scale + mean).detach().double().numpy()
    log_pi = torch.log_softmax(logits[:-1], -1)
    actions = batch["action"][:-1]
    log_pi_a = log_pi.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    log_mu_a = torch.log_softmax(batch["agent_outputs"]["policy_logits"][:-1], -1).gather(
        -1, actions.unsqueeze(-1)).squeeze(-1)
    vs, pg_adv = reference_vtrace(
        (log_pi_a - log_mu_a).detach().double().numpy(), config_like.discount * (1.0 - batch["done"][1:].numpy()),
        np.clip(batch["reward"][1:].numpy(), -1, 1), values[:-1], values[-1],
    )
    vs_t = torch.as_tensor(vs, dtype=torch.float32)
    advantages = torch.as_tensor(pg_adv / scale, dtype=torch.float32)
    loss = (-(log_pi_a * advantages).sum()
            + config_like.baseline_cost * 0.5 * (((vs_t - mean) / scale - normalized[:-1]) ** 2).sum()
            + config_like.entropy_cost * (log_pi.exp() * log_pi).sum())
    grads = _clip_global_norm(list(torch.autograd.grad(loss, list(model.parameters()))), config_like.max_grad_norm)
    expected = _rmsprop_reference(list(model.parameters()), grads, None, config_like.learning_rate)
    # Then the statistics follow vs, and the head is rescaled to keep sigma * n(x) + mu:
    # w' = w sigma / sigma', b' = (sigma b + mu - mu') / sigma'.
    new_mean, new_scale = _direct_statistics([first_targets.double().numpy(), vs], 0.05)
    names = [name for name, _ in model.named_parameters()]
    w, b = names.index("baseline.weight"), names.index("baseline.bias")
    expected[w] = expected[w] * scale / new_scale
    expected[b] = (scale * expected[b] + mean - new_mean) / new_scale

    before = _params(agent.model)
    agent.train_step(batch, LOCK)
    _assert_same_update(before, _params(agent.model), expected)
    got_mean, got_scale = (float(x) for x in agent.model.value_statistics.mean_and_scale())
    assert (got_mean, got_scale) == (pytest.approx(new_mean, rel=1e-6), pytest.approx(new_scale, rel=1e-6))


def test_statistics_travel_in_the_agent_state_and_off_by_default():
    assert ImpalaAgent(VECTOR, ImpalaConfig(torso="mlp"), torch.device("cpu"), 1).model.value_statistics is None
    config = ImpalaConfig(torso="mlp", popart=True)
    agent = ImpalaAgent(VECTOR, config, torch.device("cpu"), 10)
    agent.train_step(_impala_batch(5, 4), LOCK)
    state = agent.state_dict()
    fresh = ImpalaAgent(VECTOR, config, torch.device("cpu"), 10)
    fresh.load_state_dict(state)
    assert int(fresh.model.value_statistics.updates) == 1
    assert [float(x) for x in fresh.model.value_statistics.mean_and_scale()] == [
        float(x) for x in agent.model.value_statistics.mean_and_scale()
    ]
