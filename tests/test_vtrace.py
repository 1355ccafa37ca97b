"""Tests for V-trace (seed_rl.agents.impala.vtrace) and IMPALA losses.

The V-trace reference below is written directly from the paper's definition
(Espeholt et al. 2018, Sec. 4, Eq. 1) as an explicit sum, with plain Python
loops over numpy arrays; it deliberately does not use the backward recursion
of the implementation. Per-step discounts replace gamma^{t-s} by the product
of the per-step discounts gamma_s ... gamma_{t-1}.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from seed_rl.agents.impala import losses, vtrace


# --------------------------------------------------------------------------
# Reference implementation (explicit-sum form of the V-trace target).
# --------------------------------------------------------------------------


def _clip(x: float, threshold: float | None) -> float:
    return x if threshold is None else min(threshold, x)


def reference_vtrace(
    log_rhos: np.ndarray,
    discounts: np.ndarray,
    rewards: np.ndarray,
    values: np.ndarray,
    bootstrap_value: np.ndarray,
    clip_rho_threshold: float | None = 1.0,
    clip_pg_rho_threshold: float | None = 1.0,
    clip_c_threshold: float | None = 1.0,
    lambda_: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """v_s = V(x_s) + sum_{t=s}^{T-1} (prod_{i=s}^{t-1} gamma_i c_i) delta_t."""
    T, B = values.shape
    vs = np.zeros((T, B))
    pg_adv = np.zeros((T, B))
    for b in range(B):
        # V(x_0), ..., V(x_T) with V(x_T) = bootstrap value.
        v_ext = [float(values[t, b]) for t in range(T)] + [float(bootstrap_value[b])]
        rho = [math.exp(float(log_rhos[t, b])) for t in range(T)]
        deltas = [
            _clip(rho[t], clip_rho_threshold)
            * (rewards[t, b] + discounts[t, b] * v_ext[t + 1] - v_ext[t])
            for t in range(T)
        ]
        cs = [lambda_ * _clip(rho[t], clip_c_threshold) for t in range(T)]
        for s in range(T):
            total = v_ext[s]
            for t in range(s, T):
                coef = 1.0
                for i in range(s, t):
                    coef *= discounts[i, b] * cs[i]
                total += coef * deltas[t]
            vs[s, b] = total
        for s in range(T):
            v_next = vs[s + 1, b] if s + 1 < T else v_ext[T]
            pg_adv[s, b] = _clip(rho[s], clip_pg_rho_threshold) * (
                rewards[s, b] + discounts[s, b] * v_next - v_ext[s]
            )
    return vs, pg_adv


def _random_inputs(T: int, B: int, seed: int, done_prob: float = 0.2):
    rng = np.random.default_rng(seed)
    # Mean 0.5 so that most importance weights exceed 1 and clipping matters.
    log_rhos = rng.normal(0.5, 1.0, size=(T, B))
    dones = rng.random((T, B)) < done_prob
    discounts = 0.97 * (1.0 - dones)
    rewards = rng.normal(size=(T, B))
    values = rng.normal(size=(T, B))
    bootstrap_value = rng.normal(size=(B,))
    return log_rhos, discounts, rewards, values, bootstrap_value


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64)


CLIP_SETTINGS = [
    dict(clip_rho_threshold=1.0, clip_pg_rho_threshold=1.0, clip_c_threshold=1.0),
    dict(clip_rho_threshold=None, clip_pg_rho_threshold=None, clip_c_threshold=None),
    dict(clip_rho_threshold=2.0, clip_pg_rho_threshold=1.5, clip_c_threshold=0.8),
    dict(clip_rho_threshold=None, clip_pg_rho_threshold=1.0, clip_c_threshold=None),
]


# --------------------------------------------------------------------------
# from_importance_weights vs reference.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("T,B", [(1, 1), (1, 4), (5, 3), (17, 6)])
@pytest.mark.parametrize("clips", CLIP_SETTINGS)
@pytest.mark.parametrize("lambda_", [1.0, 0.9, 0.5])
def test_matches_reference(T, B, clips, lambda_):
    seed = 1000 * T + 10 * B + int(10 * lambda_)
    inputs = _random_inputs(T, B, seed)
    log_rhos, discounts = inputs[0], inputs[1]
    if T > 1:
        # Clipping must actually be active and episodes must end in the unroll.
        assert (log_rhos > 0).mean() > 0.5
        assert (discounts == 0).any()
    ref_vs, ref_pg = reference_vtrace(*inputs, lambda_=lambda_, **clips)
    out = vtrace.from_importance_weights(
        *[_t(x) for x in inputs], lambda_=lambda_, **clips
    )
    assert out.vs.shape == (T, B)
    assert out.pg_advantages.shape == (T, B)
    np.testing.assert_allclose(out.vs.numpy(), ref_vs, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(out.pg_advantages.numpy(), ref_pg, rtol=1e-10, atol=1e-10)


def test_float32_matches_reference():
    inputs = _random_inputs(12, 5, seed=7)
    ref_vs, ref_pg = reference_vtrace(*inputs)
    out = vtrace.from_importance_weights(
        *[torch.as_tensor(x, dtype=torch.float32) for x in inputs]
    )
    assert out.vs.dtype == torch.float32
    np.testing.assert_allclose(out.vs.numpy(), ref_vs, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out.pg_advantages.numpy(), ref_pg, rtol=1e-4, atol=1e-4)


def test_on_policy_no_dones_gives_discounted_nstep_return():
    # With rho = c = 1, lambda = 1, v_s is the bootstrapped n-step return.
    T, B, gamma = 6, 3, 0.9
    rng = np.random.default_rng(3)
    rewards = rng.normal(size=(T, B))
    values = rng.normal(size=(T, B))
    bootstrap = rng.normal(size=(B,))
    out = vtrace.from_importance_weights(
        _t(np.zeros((T, B))), _t(np.full((T, B), gamma)), _t(rewards),
        _t(values), _t(bootstrap),
    )
    for s in range(T):
        expected = sum(gamma ** (t - s) * rewards[t] for t in range(s, T))
        expected = expected + gamma ** (T - s) * bootstrap
        np.testing.assert_allclose(out.vs[s].numpy(), expected, rtol=1e-10)


def test_episode_end_cuts_bootstrap():
    # A zero discount at step k makes v_s (s <= k) independent of anything
    # after step k: values[k+1:], rewards[k+1:], bootstrap value.
    T, B, k = 8, 4, 3
    log_rhos, discounts, rewards, values, bootstrap = _random_inputs(T, B, 11, 0.0)
    discounts[k] = 0.0
    out1 = vtrace.from_importance_weights(
        _t(log_rhos), _t(discounts), _t(rewards), _t(values), _t(bootstrap)
    )
    values2, rewards2 = values.copy(), rewards.copy()
    values2[k + 1:] += 100.0
    rewards2[k + 1:] -= 50.0
    out2 = vtrace.from_importance_weights(
        _t(log_rhos), _t(discounts), _t(rewards2), _t(values2), _t(bootstrap + 7.0)
    )
    np.testing.assert_allclose(out1.vs[: k + 1].numpy(), out2.vs[: k + 1].numpy())
    np.testing.assert_allclose(
        out1.pg_advantages[: k + 1].numpy(), out2.pg_advantages[: k + 1].numpy()
    )
    # At the terminal step the target is just V + rho * (r - V).
    rho_k = np.minimum(1.0, np.exp(log_rhos[k]))
    np.testing.assert_allclose(
        out1.vs[k].numpy(), values[k] + rho_k * (rewards[k] - values[k]), rtol=1e-10
    )


def test_shape_errors():
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError):
        vtrace.from_importance_weights(x, x, x, x, torch.zeros(3))
    with pytest.raises(ValueError):
        vtrace.from_importance_weights(torch.zeros(4, 3), x, x, x, torch.zeros(2))


# --------------------------------------------------------------------------
# from_logits.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("lambda_", [1.0, 0.8])
def test_from_logits_matches_importance_weights(lambda_):
    T, B, A = 7, 5, 4
    g = torch.Generator().manual_seed(0)
    behaviour_logits = torch.randn(T, B, A, generator=g, dtype=torch.float64)
    target_logits = 2.0 * torch.randn(T, B, A, generator=g, dtype=torch.float64)
    actions = torch.randint(0, A, (T, B), generator=g)
    _, discounts, rewards, values, bootstrap = (
        _t(x) for x in _random_inputs(T, B, seed=5)
    )

    # Log-probs by hand: logit - logsumexp(logits).
    def alp(logits):
        lp = np.zeros((T, B))
        for t in range(T):
            for b in range(B):
                row = logits[t, b].numpy()
                m = row.max()
                lse = m + math.log(np.exp(row - m).sum())
                lp[t, b] = row[actions[t, b]] - lse
        return lp

    target_lp, behaviour_lp = alp(target_logits), alp(behaviour_logits)
    log_rhos = target_lp - behaviour_lp
    clips = dict(clip_rho_threshold=1.2, clip_pg_rho_threshold=1.0, clip_c_threshold=0.9)

    out = vtrace.from_logits(
        behaviour_logits, target_logits, actions, discounts, rewards, values,
        bootstrap, lambda_=lambda_, **clips,
    )
    ref = vtrace.from_importance_weights(
        _t(log_rhos), discounts, rewards, values, bootstrap, lambda_=lambda_, **clips
    )
    np.testing.assert_allclose(out.target_action_log_probs.numpy(), target_lp, rtol=1e-10)
    np.testing.assert_allclose(out.behaviour_action_log_probs.numpy(), behaviour_lp, rtol=1e-10)
    np.testing.assert_allclose(out.log_rhos.numpy(), log_rhos, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out.vs.numpy(), ref.vs.numpy(), rtol=1e-10)
    np.testing.assert_allclose(out.pg_advantages.numpy(), ref.pg_advantages.numpy(), rtol=1e-10)
    # And against the paper-equation reference as well.
    ref_vs, ref_pg = reference_vtrace(
        log_rhos, discounts.numpy(), rewards.numpy(), values.numpy(),
        bootstrap.numpy(), lambda_=lambda_, **clips,
    )
    np.testing.assert_allclose(out.vs.numpy(), ref_vs, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(out.pg_advantages.numpy(), ref_pg, rtol=1e-9, atol=1e-10)


# --------------------------------------------------------------------------
# No gradients through the targets.
# --------------------------------------------------------------------------


def test_no_gradients_flow():
    T, B, A = 5, 3, 4
    behaviour_logits = torch.randn(T, B, A, requires_grad=True)
    target_logits = torch.randn(T, B, A, requires_grad=True)
    actions = torch.randint(0, A, (T, B))
    discounts = torch.full((T, B), 0.99, requires_grad=True)
    rewards = torch.randn(T, B, requires_grad=True)
    values = torch.randn(T, B, requires_grad=True)
    bootstrap = torch.randn(B, requires_grad=True)

    out = vtrace.from_logits(
        behaviour_logits, target_logits, actions, discounts, rewards, values, bootstrap
    )
    for field in out:
        assert not field.requires_grad
        assert field.grad_fn is None

    out2 = vtrace.from_importance_weights(
        torch.randn(T, B, requires_grad=True), discounts, rewards, values, bootstrap
    )
    for field in out2:
        assert not field.requires_grad


# --------------------------------------------------------------------------
# Losses.
# --------------------------------------------------------------------------


@pytest.mark.parametrize("A", [2, 6, 18])
def test_entropy_of_uniform_logits(A):
    logits = torch.full((4, 3, A), 0.37)
    # Summed over the T*B = 12 entries (scalable_agent / TorchBeast reduction).
    assert losses.entropy_loss(logits).item() == pytest.approx(-12 * math.log(A), rel=1e-6)


def test_entropy_loss_minimisation_raises_entropy():
    logits = torch.tensor([[[3.0, -1.0, 0.5]]], requires_grad=True)
    before = -losses.entropy_loss(logits).item()
    losses.entropy_loss(logits).backward()
    with torch.no_grad():
        new_logits = logits - 0.1 * logits.grad
    after = -losses.entropy_loss(new_logits).item()
    assert after > before


def test_entropy_matches_manual():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 2, 5, generator=g, dtype=torch.float64)
    p = torch.softmax(logits, -1).numpy()
    manual = np.sum([[np.sum(p[t, b] * np.log(p[t, b])) for b in range(2)] for t in range(3)])
    assert losses.entropy_loss(logits).item() == pytest.approx(manual, rel=1e-10)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_policy_gradient_step_direction(sign):
    T, B, A = 3, 2, 5
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(T, B, A, generator=g, requires_grad=True)
    actions = torch.randint(0, A, (T, B), generator=g)
    advantages = torch.full((T, B), sign)

    def lp(lg):
        return torch.log_softmax(lg, -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)

    before = lp(logits).detach()
    losses.policy_gradient_loss(logits, actions, advantages).backward()
    with torch.no_grad():
        after = lp(logits - 0.5 * logits.grad)
    if sign > 0:
        assert torch.all(after > before)
    else:
        assert torch.all(after < before)


def test_policy_gradient_value_and_detached_advantages():
    T, B, A = 4, 3, 3
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(T, B, A, generator=g, dtype=torch.float64)
    actions = torch.randint(0, A, (T, B), generator=g)
    advantages = torch.randn(T, B, generator=g, dtype=torch.float64, requires_grad=True)
    loss = losses.policy_gradient_loss(logits, actions, advantages)
    lp = torch.log_softmax(logits, -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    expected = -(lp * advantages.detach()).sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-10)
    assert not loss.requires_grad  # advantages are detached, logits had no grad


def test_baseline_loss_value_and_gradient():
    g = torch.Generator().manual_seed(5)
    values = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    loss = losses.baseline_loss(values, targets)
    expected = 0.5 * ((targets - values) ** 2).sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-10)
    loss.backward()
    assert targets.grad is None
    np.testing.assert_allclose(
        values.grad.numpy(), (values - targets).detach().numpy(), rtol=1e-10
    )


def test_losses_sum_over_time_and_batch():
    # Repeating the batch three times triples every loss: a sum, not a mean.
    g = torch.Generator().manual_seed(6)
    T, B, A = 5, 3, 4
    logits = torch.randn(T, B, A, generator=g)
    actions = torch.randint(0, A, (T, B), generator=g)
    adv = torch.randn(T, B, generator=g)
    values, targets = torch.randn(T, B, generator=g), torch.randn(T, B, generator=g)
    rep = lambda x: torch.cat([x, x, x], dim=1)  # noqa: E731
    assert losses.policy_gradient_loss(rep(logits), rep(actions), rep(adv)).item() == (
        pytest.approx(3 * losses.policy_gradient_loss(logits, actions, adv).item(), rel=1e-5)
    )
    assert losses.baseline_loss(rep(values), rep(targets)).item() == pytest.approx(
        3 * losses.baseline_loss(values, targets).item(), rel=1e-5
    )
    assert losses.entropy_loss(rep(logits)).item() == pytest.approx(
        3 * losses.entropy_loss(logits).item(), rel=1e-5
    )


def test_mask_excludes_entries():
    g = torch.Generator().manual_seed(8)
    T, B, A = 4, 3, 5
    logits = torch.randn(T, B, A, generator=g)
    actions = torch.randint(0, A, (T, B), generator=g)
    adv = torch.randn(T, B, generator=g)
    values, targets = torch.randn(T, B, generator=g), torch.randn(T, B, generator=g)
    mask = torch.ones(T, B, dtype=torch.bool)
    mask[2:, 1] = False
    # Garbage in the masked entries must not matter.
    logits2, adv2, targets2 = logits.clone(), adv.clone(), targets.clone()
    logits2[2:, 1] = 1e3 * torch.randn(2, A, generator=g)
    adv2[2:, 1] = 1e6
    targets2[2:, 1] = -1e6
    for fn in [
        lambda lg, ad, tg: losses.policy_gradient_loss(lg, actions, ad, mask),
        lambda lg, ad, tg: losses.baseline_loss(values, tg, mask),
        lambda lg, ad, tg: losses.entropy_loss(lg, mask),
    ]:
        assert fn(logits, adv, targets).item() == pytest.approx(
            fn(logits2, adv2, targets2).item(), rel=1e-5
        )
    # The masked loss is the sum over the valid entries.
    valid = mask.flatten()
    expected = 0.5 * ((targets - values) ** 2).flatten()[valid].sum()
    assert losses.baseline_loss(values, targets, mask).item() == pytest.approx(
        expected.item(), rel=1e-6
    )
    # An all-zero mask gives a zero loss, not NaN.
    assert losses.baseline_loss(values, targets, torch.zeros(T, B)).item() == 0.0
