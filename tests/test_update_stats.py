"""How far an update moves each part of the network: the logged ratios against hand-computed optimizer steps."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from seed_rl.agents.impala.optimizers import TFRMSprop
from seed_rl.learner.update_stats import network_part, snapshot, update_stats


class Parts(nn.Module):
    def __init__(self):
        super().__init__()
        self.torso = nn.Linear(4, 3)
        self.core = nn.Linear(3, 3)
        self.value = nn.Linear(3, 1)

    def forward(self, x):
        return self.value(self.core(self.torso(x)))


def test_parts_are_named_by_the_first_attribute():
    assert [network_part(n) for n in ("torso.conv.weight", "core.lstm.weight_hh", "advantage.2.bias", "policy.weight")] \
        == ["torso", "core", "heads", "heads"]


def _one_step(model, optimizer, scale: float):
    torch.manual_seed(1)
    loss = scale * model(torch.randn(16, 4)).pow(2).sum()
    optimizer.zero_grad()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    before = snapshot(model)
    optimizer.step()
    return before, grads, update_stats(model, before, optimizer)


@pytest.mark.parametrize("eps", [1e-8, 1e-4])
def test_adam_ratios_equal_a_hand_computed_first_step(eps):
    torch.manual_seed(0)
    model, lr = Parts(), 0.01
    # Gradients of ~1e-4: epsilon 1e-4 swamps 58-87% of the body's entries, 1e-8 none.
    before, grads, stats = _one_step(model, torch.optim.Adam(model.parameters(), lr=lr, eps=eps), scale=1e-4)
    for part, names in {"torso": ["torso.weight", "torso.bias"], "core": ["core.weight", "core.bias"],
                        "heads": ["value.weight", "value.bias"]}.items():
        g = torch.cat([grads[n].flatten().double() for n in names])
        w = torch.cat([before[n].flatten().double() for n in names])
        # Adam's first step: m_hat = g, v_hat = g^2, so every entry moves by lr * g / (|g| + eps).
        step = lr * g / (g.abs() + eps)
        assert stats[f"update/{part}_ratio"] == pytest.approx(float(step.norm() / w.norm()), rel=1e-4)
        assert stats[f"update/{part}_nominal"] == pytest.approx(float(step.norm() / (lr * math.sqrt(len(g)))), rel=1e-4)
        seen = g != 0
        below = float((g.abs()[seen] < eps).double().mean())
        assert stats[f"update/{part}_below_eps"] == pytest.approx(below)
    if eps == 1e-8:
        assert all(stats[f"update/{p}_nominal"] > 0.99 for p in ("torso", "core", "heads"))
    else:
        assert 0.5 < stats["update/core_below_eps"] < 1 and stats["update/torso_nominal"] < 0.5


def test_rmsprop_second_moments_are_compared_with_their_epsilon():
    torch.manual_seed(0)
    model = Parts()
    _, grads, stats = _one_step(model, torch.optim.RMSprop(model.parameters(), lr=0.01, alpha=0.99, eps=1e-4),
                                scale=1e-3)
    g = torch.cat([grads[n].flatten() for n in ("torso.weight", "torso.bias")])
    # torch RMSprop: square_avg = 0.01 g^2 after one step, compared with eps outside the root.
    assert stats["update/torso_below_eps"] == pytest.approx(float(((0.01 * g * g).sqrt() < 1e-4).double().mean()))

    model = Parts()
    _, grads, stats = _one_step(model, TFRMSprop(model.parameters(), lr=0.01, decay=0.99, epsilon=0.1), scale=1.0)
    # TF RMSprop: ms starts at 1 (never below 0.1 after one step): nothing below epsilon.
    assert stats["update/torso_below_eps"] == 0.0


def test_a_network_without_an_optimizer_reports_ratios_only():
    model = Parts()
    before = snapshot(model)
    with torch.no_grad():
        model.torso.weight.add_(1.0)
    stats = update_stats(model, before, None)
    assert stats["update/torso_ratio"] > 0 and stats["update/core_ratio"] == 0
    assert not any(key.endswith(("_nominal", "_below_eps")) for key in stats)
