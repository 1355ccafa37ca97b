"""IMPALA loss terms (policy gradient, baseline, entropy).

Reduction convention: every loss is a **mean over the T*B (time x batch)
entries**, not a sum, so learning rates and loss coefficients do not depend on
unroll length or batch size. With a ``mask`` ([T, B], bool or float weights),
the mean is taken over the masked entries only:
``sum(mask * x) / max(sum(mask), 1)``.

Advantages and V-trace targets are treated as constants (``detach``); only the
logits / values passed in receive gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``x`` over all entries, or over entries where ``mask`` is set."""
    if mask is None:
        return x.mean()
    if mask.shape != x.shape:
        raise ValueError(
            f"mask shape {tuple(mask.shape)} != loss shape {tuple(x.shape)}."
        )
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def policy_gradient_loss(
    logits: torch.Tensor,
    actions: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Policy gradient loss ``-mean(log pi(a_s|x_s) * A_s)``.

    Args:
      logits: policy logits ``[T, B, A]`` (receive gradients).
      actions: taken actions, int64 ``[T, B]``.
      advantages: e.g. V-trace ``pg_advantages``, ``[T, B]``; detached.
      mask: optional ``[T, B]`` validity mask.

    Returns:
      Scalar loss; minimising it raises the log-prob of actions with positive
      advantage.
    """
    if logits.shape[:-1] != actions.shape or advantages.shape != actions.shape:
        raise ValueError(
            f"Incompatible shapes: logits {tuple(logits.shape)}, actions "
            f"{tuple(actions.shape)}, advantages {tuple(advantages.shape)}."
        )
    log_probs = F.log_softmax(logits, dim=-1)
    action_log_probs = log_probs.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
    return _masked_mean(-action_log_probs * advantages.detach(), mask)


def baseline_loss(
    values: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Value regression loss ``0.5 * mean((targets - values)^2)``.

    Args:
      values: baseline predictions ``V(x_s)``, ``[T, B]`` (receive gradients).
      targets: value targets, e.g. V-trace ``vs``, ``[T, B]``; detached.
      mask: optional ``[T, B]`` validity mask.

    Returns:
      Scalar loss.
    """
    if values.shape != targets.shape:
        raise ValueError(
            f"values {tuple(values.shape)} and targets {tuple(targets.shape)} "
            "differ in shape."
        )
    return _masked_mean(0.5 * (targets.detach() - values) ** 2, mask)


def entropy_loss(
    logits: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Negative policy entropy ``mean(sum_a pi(a) log pi(a))``.

    Minimising this loss increases the entropy of the policy.

    Args:
      logits: policy logits ``[T, B, A]``.
      mask: optional ``[T, B]`` validity mask.

    Returns:
      Scalar loss (``-entropy``, averaged over T*B).
    """
    log_probs = F.log_softmax(logits, dim=-1)
    neg_entropy = (log_probs.exp() * log_probs).sum(-1)
    return _masked_mean(neg_entropy, mask)
