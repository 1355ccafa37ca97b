"""How far one optimizer update moves each part of a network.

Adam and RMSprop move each weight by about ``lr * g / (sqrt(v) + eps)``: the
nominal step ``lr`` while the gradient's second-moment root ``sqrt(v)`` is well
above ``eps``, and a fraction ``sqrt(v) / eps`` of it where ``eps`` is larger.
Whether ``eps`` swamps a gradient depends on how the loss is reduced and on
the size of the batch, so the learner logs, per part of the network:

- ``update/<part>_ratio``: the update's norm over the weights' norm;
- ``update/<part>_nominal``: the update's norm over the nominal step's norm
  ``lr * sqrt(entries)`` (1: every entry moved by ``lr``);
- ``update/<part>_below_eps``: of the entries that have had a gradient, the
  fraction whose second-moment root is below the optimizer's epsilon (those
  move by less than half the nominal step).

Parts: ``torso`` (the observation encoder), ``core`` (the LSTM) and ``heads``
(everything else), named by each parameter's first attribute.
"""

from __future__ import annotations

import math

import torch

from seed_rl.agents.impala.optimizers import TFRMSprop

PARTS = ("torso", "core", "heads")


def network_part(parameter_name: str) -> str:
    """``torso``, ``core`` or ``heads`` for a parameter name such as ``torso.conv1.weight``."""
    first = parameter_name.split(".", 1)[0]
    return first if first in ("torso", "core") else "heads"


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every trainable parameter, to compare with after an update."""
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def _group_of(optimizer: torch.optim.Optimizer, parameter: torch.Tensor) -> dict | None:
    for group in optimizer.param_groups:
        if any(p is parameter for p in group["params"]):
            return group
    return None


def second_moment_root(optimizer: torch.optim.Optimizer, parameter: torch.Tensor) -> tuple[torch.Tensor, float] | None:
    """The root of ``parameter``'s second-moment estimate and the epsilon it is compared with, or None.

    Adam: ``sqrt(v / (1 - beta2^t))`` against ``eps`` (both sit in its denominator);
    torch RMSprop: ``sqrt(square_avg)`` against ``eps``; TF RMSprop (``ms + eps``
    under the root): ``sqrt(ms)`` against ``sqrt(eps)``.
    """
    state = optimizer.state.get(parameter)
    group = _group_of(optimizer, parameter)
    if not state or group is None:
        return None
    if isinstance(optimizer, torch.optim.Adam):
        step = float(state["step"])
        correction = 1.0 - group["betas"][1] ** step
        return (state["exp_avg_sq"] / correction).sqrt(), float(group["eps"])
    if isinstance(optimizer, torch.optim.RMSprop):
        return state["square_avg"].sqrt(), float(group["eps"])
    if isinstance(optimizer, TFRMSprop):
        return state["ms"].sqrt(), math.sqrt(group["epsilon"])
    return None


def update_stats(
    model: torch.nn.Module, before: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer | None
) -> dict[str, float]:
    """Per part of ``model``: how far it moved since ``before`` (see the module docstring)."""
    sums = {part: {"update": 0.0, "weights": 0.0, "entries": 0, "nominal": 0.0, "below": 0, "measured": 0}
            for part in PARTS}
    for name, p in model.named_parameters():
        if name not in before:
            continue
        s = sums[network_part(name)]
        old = before[name].double()
        s["update"] += float((p.detach().double() - old).pow(2).sum())
        s["weights"] += float(old.pow(2).sum())
        s["entries"] += p.numel()
        group = _group_of(optimizer, p) if optimizer is not None else None
        if group is not None:
            lr = float(group["lr"])
            s["nominal"] += lr * lr * p.numel()
        moment = second_moment_root(optimizer, p) if optimizer is not None else None
        if moment is not None:
            root, eps = moment
            seen = root > 0  # entries that never had a gradient cannot move, whatever epsilon is
            s["below"] += int((seen & (root < eps)).sum())
            s["measured"] += int(seen.sum())
    stats: dict[str, float] = {}
    for part, s in sums.items():
        if not s["entries"]:
            continue
        stats[f"update/{part}_ratio"] = math.sqrt(s["update"]) / max(math.sqrt(s["weights"]), 1e-12)
        if s["nominal"]:
            stats[f"update/{part}_nominal"] = math.sqrt(s["update"] / s["nominal"])
        if s["measured"]:
            stats[f"update/{part}_below_eps"] = s["below"] / s["measured"]
    return stats
