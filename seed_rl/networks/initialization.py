"""Weight initialisation schemes for actor-critic networks.

``torch``: each layer keeps PyTorch's own default (uniform weights and biases
scaled by 1/sqrt(fan_in)).

``orthogonal``: the scheme of OpenAI Baselines' A2C/PPO (``ortho_init``) and
CleanRL's Atari agents (``layer_init``): orthogonal weights with gain sqrt(2)
in the ReLU torso, 0.01 on the policy head (a near-uniform first policy) and
1 on the value head, all biases zero. On Pong it is the difference between a
torso whose features follow the frames and one that sees only the background:
with PyTorch's default, the Nature CNN's fully connected pre-activations vary
40x less between states than between units (measured here, docs/results.md).
"""

from __future__ import annotations

import math

from torch import nn

WEIGHT_INITS = ("torch", "orthogonal")

_RELU_GAIN = math.sqrt(2.0)
_POLICY_GAIN = 0.01
_VALUE_GAIN = 1.0


def _orthogonal(module: nn.Module, gain: float) -> None:
    """Orthogonal weights with ``gain`` and zero biases for every conv and linear layer in ``module``."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.orthogonal_(layer.weight, gain)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def initialize_actor_critic(scheme: str, torso: nn.Module, policy: nn.Module, value: nn.Module) -> None:
    """Re-initialises a torso and its policy and value heads in place (recurrent cores are left alone)."""
    if scheme not in WEIGHT_INITS:
        raise ValueError(f"weight_init must be one of {', '.join(WEIGHT_INITS)}, got {scheme!r}")
    if scheme == "torch":
        return
    _orthogonal(torso, _RELU_GAIN)
    _orthogonal(policy, _POLICY_GAIN)
    _orthogonal(value, _VALUE_GAIN)
