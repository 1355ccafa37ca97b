"""Weight initialisation of the actor-critic network (``--weight_init``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from seed_rl.agents.impala.network import ActorCriticNet


def _net(weight_init: str, shape=(4, 84, 84), torso="nature") -> ActorCriticNet:
    torch.manual_seed(0)
    return ActorCriticNet(shape, "uint8", 6, torso=torso, weight_init=weight_init)


def _gram(weight: torch.Tensor) -> torch.Tensor:
    """W W^T or W^T W, whichever is the smaller (orthonormal rows or columns)."""
    w = weight.flatten(1)
    return w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w


def test_orthogonal_scheme_follows_baselines_gains():
    net = _net("orthogonal")
    layers = [m for m in net.torso.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) == 4  # three convolutions and the fully connected layer
    for layer in layers:
        gram = _gram(layer.weight.detach())
        torch.testing.assert_close(gram, 2.0 * torch.eye(len(gram)), atol=1e-4, rtol=0)
        assert torch.count_nonzero(layer.bias) == 0
    torch.testing.assert_close(_gram(net.policy.weight.detach()), 1e-4 * torch.eye(6), atol=1e-8, rtol=0)
    assert math.isclose(float(net.baseline.weight.detach().norm()), 1.0, rel_tol=1e-5)
    assert torch.count_nonzero(net.policy.bias) == 0 and torch.count_nonzero(net.baseline.bias) == 0


def test_orthogonal_first_policy_is_near_uniform():
    observations = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (8, 1, 4, 84, 84), dtype=np.uint8))
    net = _net("orthogonal")
    with torch.no_grad():
        logits, _, _ = net(observations, torch.zeros(8, 1, dtype=torch.bool), ())
    probabilities = torch.softmax(logits, -1)
    entropy = -(probabilities * probabilities.log()).sum(-1)
    assert float(entropy.min()) > 0.99 * math.log(6)


def test_torch_scheme_keeps_pytorch_defaults():
    torch.manual_seed(0)
    reference = nn.Linear(3136, 512)  # the Nature CNN's fc layer, built first after the convolutions
    net = _net("torch")
    bound = 1.0 / math.sqrt(3136)
    assert float(net.torso.fc.weight.detach().abs().max()) <= bound
    assert torch.count_nonzero(net.torso.fc.bias) > 0
    assert reference.weight.shape == net.torso.fc.weight.shape


def test_unknown_scheme_is_refused():
    with pytest.raises(ValueError, match="weight_init must be one of torch, orthogonal"):
        _net("xavier")
