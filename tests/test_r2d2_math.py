"""Tests for R2D2 value rescaling and n-step double-Q targets.

``seed_rl.agents.r2d2.value_rescaling`` (Pohlen et al. 2018, Sec. 3.2 and
Prop. A.2) and ``seed_rl.agents.r2d2.targets`` (Kapturowski et al. 2019,
Sec. 2). The references below are plain Python loops written directly from
the formulas, using the paper's (textbook) closed forms via ``math`` in double
precision, not the implementation's rearranged forms.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from seed_rl.agents.r2d2.config import R2D2Config
from seed_rl.agents.r2d2.priorities import sequence_priority
from seed_rl.agents.r2d2.targets import double_q_bootstrap, n_step_targets
from seed_rl.agents.r2d2.value_rescaling import inverse_value_rescale, value_rescale

EPS = 1e-3


# --------------------------------------------------------------------------
# Scalar references, straight from the paper's formulas.
# --------------------------------------------------------------------------


def ref_h(x: float, eps: float = EPS) -> float:
    s = math.copysign(1.0, x) if x != 0 else 0.0
    return s * (math.sqrt(abs(x) + 1.0) - 1.0) + eps * x


def ref_h_inv(x: float, eps: float = EPS) -> float:
    s = math.copysign(1.0, x) if x != 0 else 0.0
    if eps == 0:
        return s * ((abs(x) + 1.0) ** 2 - 1.0)
    inner = (math.sqrt(1.0 + 4.0 * eps * (abs(x) + 1.0 + eps)) - 1.0) / (2.0 * eps)
    return s * (inner**2 - 1.0)


def wide_grid(dtype: torch.dtype) -> torch.Tensor:
    """logspace(-6, 6) with both signs, plus 0."""
    pos = torch.logspace(-6, 6, 241, dtype=torch.float64)
    return torch.cat([-pos.flip(0), torch.zeros(1, dtype=torch.float64), pos]).to(dtype)


# --------------------------------------------------------------------------
# Value rescaling.
# --------------------------------------------------------------------------


def test_known_values():
    x = torch.tensor([0.0, 3.0, -3.0, 8.0, -8.0, 99.0], dtype=torch.float64)
    expected = torch.tensor(
        [0.0, 1.003, -1.003, 2.008, -2.008, 9.099], dtype=torch.float64
    )
    torch.testing.assert_close(value_rescale(x), expected, rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(inverse_value_rescale(expected), x, rtol=1e-12, atol=1e-15)
    # eps = 0: h(x) = sign(x)(sqrt(|x| + 1) - 1), h^{-1}(y) = sign(y)((|y| + 1)^2 - 1).
    torch.testing.assert_close(
        value_rescale(torch.tensor([3.0, -15.0], dtype=torch.float64), eps=0.0),
        torch.tensor([1.0, -3.0], dtype=torch.float64),
    )
    torch.testing.assert_close(
        inverse_value_rescale(torch.tensor([1.0, -3.0], dtype=torch.float64), eps=0.0),
        torch.tensor([3.0, -15.0], dtype=torch.float64),
    )
    assert value_rescale(torch.zeros(1))[0].item() == 0.0
    assert inverse_value_rescale(torch.zeros(1))[0].item() == 0.0


@pytest.mark.parametrize("eps", [EPS, 1e-2, 0.0])
def test_matches_paper_closed_forms(eps):
    # Moderate range where the textbook forms are themselves accurate in float64.
    x = torch.linspace(-50.0, 50.0, 201, dtype=torch.float64)
    h = value_rescale(x, eps)
    h_inv = inverse_value_rescale(x, eps)
    np.testing.assert_allclose(h.numpy(), [ref_h(v, eps) for v in x.tolist()], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        h_inv.numpy(), [ref_h_inv(v, eps) for v in x.tolist()], rtol=1e-9, atol=1e-9
    )


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-13), (torch.float32, 2e-6)])
def test_round_trip_wide_range(dtype, rtol):
    x = wide_grid(dtype)
    torch.testing.assert_close(inverse_value_rescale(value_rescale(x)), x, rtol=rtol, atol=0.0)
    # The corresponding range for h^{-1}: |y| in [1e-6, h(1e6) ~ 2001], both signs, plus 0.
    top = math.log10(ref_h(1e6))
    pos = torch.logspace(-6, top, 241, dtype=torch.float64)
    y = torch.cat([-pos.flip(0), torch.zeros(1, dtype=torch.float64), pos]).to(dtype)
    torch.testing.assert_close(value_rescale(inverse_value_rescale(y)), y, rtol=rtol, atol=0.0)


def test_float32_accuracy_against_float64():
    """No cancellation: float32 keeps relative precision, including near 0."""
    x64 = wide_grid(torch.float64)
    for fn in (value_rescale, inverse_value_rescale):
        out32 = fn(x64.to(torch.float32)).to(torch.float64)
        torch.testing.assert_close(out32, fn(x64), rtol=1e-6, atol=0.0)
    # Near-zero slopes: h(x) ~ (1/2 + eps) x, h^{-1}(y) ~ y / (1/2 + eps).
    tiny = torch.tensor([1e-6, -1e-7], dtype=torch.float32)
    torch.testing.assert_close(value_rescale(tiny), tiny * (0.5 + EPS), rtol=1e-5, atol=0.0)
    torch.testing.assert_close(inverse_value_rescale(tiny), tiny / (0.5 + EPS), rtol=1e-5, atol=0.0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_monotone_odd_and_dtype(dtype):
    x = wide_grid(dtype)
    for fn in (value_rescale, inverse_value_rescale):
        out = fn(x)
        assert out.dtype == dtype and out.shape == x.shape
        assert torch.all(out[1:] > out[:-1])
        torch.testing.assert_close(fn(-x), -out, rtol=0.0, atol=0.0)
        assert torch.all(torch.isfinite(out))


def test_gradient_at_zero():
    x = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(value_rescale(x).sum(), x)
    torch.testing.assert_close(g, torch.full_like(g, 0.5 + EPS))
    (g,) = torch.autograd.grad(inverse_value_rescale(x).sum(), x)
    torch.testing.assert_close(g, torch.full_like(g, 1.0 / (0.5 + EPS)))


# --------------------------------------------------------------------------
# Double-Q bootstrap.
# --------------------------------------------------------------------------


def ref_double_q(online: np.ndarray, target: np.ndarray) -> np.ndarray:
    length, batch, num_actions = online.shape
    out = np.zeros((length, batch))
    for t in range(length):
        for b in range(batch):
            best = 0
            for a in range(1, num_actions):
                if online[t, b, a] > online[t, b, best]:
                    best = a
            out[t, b] = target[t, b, best]
    return out


def test_double_q_bootstrap_random():
    gen = torch.Generator().manual_seed(0)
    online = torch.randn(5, 4, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    target = torch.randn(5, 4, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    out = double_q_bootstrap(online, target)
    assert out.shape == (5, 4) and not out.requires_grad
    np.testing.assert_array_equal(out.numpy(), ref_double_q(online.detach().numpy(), target.detach().numpy()))


def test_double_q_uses_online_argmax_not_target_max():
    online = torch.tensor([[[1.0, 5.0, 2.0], [0.0, -1.0, 3.0]]])  # [1, 2, 3]
    target = torch.tensor([[[10.0, -4.0, 7.0], [9.0, 8.0, 0.5]]])
    out = double_q_bootstrap(online, target)
    # Online argmax is 1 and 2; target's own max would give 10 and 9.
    torch.testing.assert_close(out, torch.tensor([[-4.0, 0.5]]))
    np.testing.assert_array_equal(out.numpy(), ref_double_q(online.numpy(), target.numpy()))
    assert not torch.equal(out, target.max(-1).values)


def test_double_q_shape_checks():
    with pytest.raises(ValueError):
        double_q_bootstrap(torch.zeros(2, 3, 4), torch.zeros(2, 3, 5))
    with pytest.raises(ValueError):
        double_q_bootstrap(torch.zeros(3, 4), torch.zeros(3, 4))


# --------------------------------------------------------------------------
# n-step targets.
# --------------------------------------------------------------------------


def ref_n_step(rewards, discounts, values, n, rescale, eps=EPS):
    """Per t, per b, explicit loop over k that stops at a zero discount."""
    length, batch = rewards.shape
    out = np.zeros((length - 1, batch))
    for t in range(length - 1):
        m = min(n, length - 1 - t)
        for b in range(batch):
            g = 0.0
            prod = 1.0  # prod_{j=1}^{k} d_{t+j}
            for k in range(m):
                g += prod * rewards[t + k + 1, b]
                prod *= discounts[t + k + 1, b]
                if prod == 0.0:  # episode ended at step t+k+1
                    break
            if prod != 0.0:
                v = values[t + m, b]
                g += prod * (ref_h_inv(v, eps) if rescale else v)
            out[t, b] = ref_h(g, eps) if rescale else g
    return out


def make_inputs(length, batch, seed, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    rewards = torch.randn(length, batch, generator=gen, dtype=dtype) * 3.0
    alive = (torch.rand(length, batch, generator=gen) > 0.25).to(dtype)
    discounts = 0.97 * alive
    discounts[0, :] = 0.0  # discounts[0] arrived before the sequence: never used
    if length > 1:
        discounts[1, 0] = 0.0  # episode ends at the very first step
        discounts[1, 1] = 0.97
    if length > 3:
        discounts[3, 1] = 0.0  # episode end inside the n-step window
    values = torch.randn(length, batch, generator=gen, dtype=dtype) * 5.0
    return rewards, discounts, values


@pytest.mark.parametrize("rescale", [True, False])
@pytest.mark.parametrize("length", [2, 7, 12])
@pytest.mark.parametrize("n", [1, 3, 5])
def test_n_step_targets_vs_reference(n, length, rescale):
    rewards, discounts, values = make_inputs(length, 6, seed=100 * n + length)
    out = n_step_targets(rewards, discounts, values, n, rescale=rescale)
    assert out.shape == (length - 1, 6) and out.dtype == torch.float64
    expected = ref_n_step(rewards.numpy(), discounts.numpy(), values.numpy(), n, rescale)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-10)


def test_n_step_targets_float32_and_no_grad():
    rewards, discounts, values = make_inputs(9, 5, seed=7, dtype=torch.float32)
    rewards.requires_grad_(True)
    values.requires_grad_(True)
    out = n_step_targets(rewards, discounts, values, 3)
    assert out.dtype == torch.float32 and not out.requires_grad
    expected = ref_n_step(
        rewards.detach().double().numpy(), discounts.double().numpy(), values.detach().double().numpy(), 3, True
    )
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_n_step_targets_hand_computed():
    # L = 4, B = 1, n = 2, no rescaling; an episode end at step 2.
    rewards = torch.tensor([[9.0], [1.0], [2.0], [4.0]], dtype=torch.float64)
    discounts = torch.tensor([[0.0], [0.5], [0.0], [0.5]], dtype=torch.float64)
    values = torch.tensor([[100.0], [10.0], [20.0], [40.0]], dtype=torch.float64)
    out = n_step_targets(rewards, discounts, values, 2, rescale=False)
    expected = torch.tensor(
        [
            [1.0 + 0.5 * 2.0 + 0.5 * 0.0 * 20.0],  # t=0: r1 + d1 r2 + d1 d2 v2
            [2.0 + 0.0 * 4.0 + 0.0 * 40.0],  # t=1: episode ends at step 2
            [4.0 + 0.5 * 40.0],  # t=2: truncated, m = 1
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(out, expected)
    # With rescaling, a 1-step target with h-space bootstrap h(q) is h(r + d q).
    q = torch.tensor([[0.0], [0.0], [0.0], [12.0]], dtype=torch.float64)
    out = n_step_targets(rewards, discounts, value_rescale(q), 1)
    torch.testing.assert_close(out[2], value_rescale(torch.tensor([4.0 + 0.5 * 12.0], dtype=torch.float64)))


def test_n_step_targets_argument_checks():
    z = torch.zeros(4, 2)
    with pytest.raises(ValueError):
        n_step_targets(z, z, z, 0)
    with pytest.raises(ValueError):
        n_step_targets(z, z, torch.zeros(4, 3), 2)
    with pytest.raises(ValueError):
        n_step_targets(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 2), 2)


def _truncation_mask_reference(done: np.ndarray, truncated: np.ndarray, n: int) -> np.ndarray:
    length, batch = done.shape
    mask = np.ones((length - 1, batch), dtype=bool)
    for b in range(batch):
        for t in range(length - 1):
            for j in range(t + 1, min(t + n, length - 1) + 1):
                if done[j, b]:
                    mask[t, b] = not truncated[j, b]
                    break
    return mask


@pytest.mark.parametrize("n", [1, 3, 5])
@pytest.mark.parametrize("length", [2, 7, 12])
def test_truncation_mask_matches_loop_reference(n, length):
    from seed_rl.agents.r2d2.targets import truncation_mask

    rng = np.random.default_rng(100 * n + length)
    done = rng.random((length, 9)) < 0.3
    truncated = done & (rng.random((length, 9)) < 0.5)
    got = truncation_mask(torch.from_numpy(done), torch.from_numpy(truncated), n).numpy()
    np.testing.assert_array_equal(got, _truncation_mask_reference(done, truncated, n))


def test_truncation_mask_only_the_first_episode_end_counts():
    from seed_rl.agents.r2d2.targets import truncation_mask

    done = torch.tensor([[False], [False], [True], [True]])
    truncated = torch.tensor([[False], [False], [False], [True]])
    # Step 0 and 1 end with the termination at step 2; step 2's window starts
    # at step 3, the truncation.
    assert truncation_mask(done, truncated, 3)[:, 0].tolist() == [True, True, False]


# ----------------------------------------------------------------------------
# Sequence priority

ETA = R2D2Config().priority_eta


def test_priority_eta_is_r2d2_table_2():
    assert ETA == 0.9


def test_sequence_priority_by_hand():
    # [T=3, B=2] signed TD errors.
    td = np.array([[1.0, -2.0], [3.0, 0.5], [-2.0, 1.0]])
    # Column 0: |d| = 1, 3, 2 -> max 3, mean 2 -> 0.9*3 + 0.1*2 = 2.9
    # Column 1: |d| = 2, .5, 1 -> max 2, mean 3.5/3 -> 0.9*2 + 0.1*3.5/3
    expected = np.array([2.9, 1.8 + 0.35 / 3])
    np.testing.assert_allclose(sequence_priority(np.abs(td), ETA), expected)
    np.testing.assert_allclose(sequence_priority(td, ETA), expected)  # abs applied again.
    np.testing.assert_allclose(sequence_priority(np.abs(td), eta=0.0), [2.0, 3.5 / 3])
    np.testing.assert_allclose(sequence_priority(np.abs(td), eta=1.0), [3.0, 2.0])
    assert sequence_priority(np.array([1.0, 3.0, 2.0]), ETA) == pytest.approx(2.9)

    tensor = torch.tensor(td, dtype=torch.float32, requires_grad=True)
    result = sequence_priority(tensor.abs(), ETA)
    assert isinstance(result, torch.Tensor) and not result.requires_grad
    assert result.shape == (2,) and result.dtype == torch.float32
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-6)
    # Extra trailing axes are kept: [T, B, K] -> [B, K].
    assert sequence_priority(np.ones((4, 2, 3)), ETA).shape == (2, 3)

    with pytest.raises(ValueError, match="eta"):
        sequence_priority(td, eta=1.5)
    with pytest.raises(ValueError, match="time axis"):
        sequence_priority(np.zeros((0, 2)), ETA)
