"""IMPALA loss terms (policy gradient, baseline, entropy).

Reduction convention: every loss is a **sum over the T*B (time x batch)
entries**, as in IMPALA's own code (scalable_agent) and TorchBeast. The
optimizer's epsilon only has a meaning together with this reduction: RMSprop
on a loss scaled by c with epsilon e takes the same steps as on the unscaled
loss with epsilon e/c, so the RMSprop epsilon of those sources (sized for
summed gradients) is only right with summed losses. ``ImpalaAgent`` divides
by T*B itself where its source (SEED RL's Adam configs) takes means. With a
``mask`` ([T, B], bool or float weights), only the masked entries are summed.

Advantages and V-trace targets are treated as constants (``detach``); only the
logits / values passed in receive gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _masked_sum(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Sum of ``x`` over all entries, or over entries where ``mask`` is set (weighted)."""
    if mask is None:
        return x.sum()
    if mask.shape != x.shape:
        raise ValueError(
            f"mask shape {tuple(mask.shape)} != loss shape {tuple(x.shape)}."
        )
    return (x * mask.to(x.dtype)).sum()


def policy_gradient_loss(
    logits: torch.Tensor,
    actions: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Policy gradient loss ``-sum(log pi(a_s|x_s) * A_s)``.

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
    return _masked_sum(-action_log_probs * advantages.detach(), mask)


def baseline_loss(
    values: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Value regression loss ``0.5 * sum((targets - values)^2)``.

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
    return _masked_sum(0.5 * (targets.detach() - values) ** 2, mask)


def entropy_loss(
    logits: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Negative policy entropy ``sum_s sum_a pi(a|x_s) log pi(a|x_s)``.

    Minimising this loss increases the entropy of the policy.

    Args:
      logits: policy logits ``[T, B, A]``.
      mask: optional ``[T, B]`` validity mask.

    Returns:
      Scalar loss (``-entropy``, summed over T*B).
    """
    log_probs = F.log_softmax(logits, dim=-1)
    neg_entropy = (log_probs.exp() * log_probs).sum(-1)
    return _masked_sum(neg_entropy, mask)
