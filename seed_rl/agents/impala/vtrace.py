"""V-trace off-policy actor-critic targets.

Reference: Espeholt et al. 2018, "IMPALA: Scalable Distributed Deep-RL with
Importance Weighted Actor-Learner Architectures", Sec. 4 (V-trace target) and
Remark 1 (the backward recursion used here).

Notation (time-major, ``T`` unroll steps, ``B`` batch):

* ``log_rhos[s]   = log pi(a_s|x_s) - log mu(a_s|x_s)`` (target minus behaviour)
* ``discounts[s]  = gamma * (1 - done_s)``; an episode end inside the unroll is
  simply a zero discount, which cuts both bootstrapping and the trace.
* ``rewards[s]``, ``values[s] = V(x_s)``, ``bootstrap_value = V(x_T)``.

All computations run under ``torch.no_grad()``: V-trace targets and policy
gradient advantages are treated as constants (they are not back-propagated
through), as in the IMPALA paper.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class VTraceReturns(NamedTuple):
    """V-trace outputs.

    Attributes:
      vs: V-trace value targets ``v_s``, shape ``[T, B]``.
      pg_advantages: policy gradient advantages
        ``rho_pg_s * (r_s + gamma_s * v_{s+1} - V(x_s))``, shape ``[T, B]``.
    """

    vs: torch.Tensor
    pg_advantages: torch.Tensor


class VTraceReturnsWithLogProbs(NamedTuple):
    """V-trace outputs plus the log-probabilities used to compute them.

    Attributes:
      vs: V-trace value targets, ``[T, B]``.
      pg_advantages: policy gradient advantages, ``[T, B]``.
      log_rhos: ``target_action_log_probs - behaviour_action_log_probs``,
        ``[T, B]``.
      behaviour_action_log_probs: ``log mu(a_s|x_s)``, ``[T, B]``.
      target_action_log_probs: ``log pi(a_s|x_s)``, ``[T, B]``.
    """

    vs: torch.Tensor
    pg_advantages: torch.Tensor
    log_rhos: torch.Tensor
    behaviour_action_log_probs: torch.Tensor
    target_action_log_probs: torch.Tensor


def _clip_max(x: torch.Tensor, threshold: float | None) -> torch.Tensor:
    """Returns ``min(threshold, x)``, or ``x`` unchanged if threshold is None."""
    if threshold is None:
        return x
    return torch.clamp(x, max=float(threshold))


def _check_shapes(
    log_rhos: torch.Tensor,
    discounts: torch.Tensor,
    rewards: torch.Tensor,
    values: torch.Tensor,
    bootstrap_value: torch.Tensor,
) -> None:
    if values.dim() < 1:
        raise ValueError("values must have a leading time dimension [T, ...].")
    for name, t in (
        ("log_rhos", log_rhos),
        ("discounts", discounts),
        ("rewards", rewards),
    ):
        if t.shape != values.shape:
            raise ValueError(
                f"{name} has shape {tuple(t.shape)}, expected "
                f"{tuple(values.shape)} (same as values)."
            )
    if bootstrap_value.shape != values.shape[1:]:
        raise ValueError(
            f"bootstrap_value has shape {tuple(bootstrap_value.shape)}, "
            f"expected {tuple(values.shape[1:])}."
        )


def from_importance_weights(
    log_rhos: torch.Tensor,
    discounts: torch.Tensor,
    rewards: torch.Tensor,
    values: torch.Tensor,
    bootstrap_value: torch.Tensor,
    clip_rho_threshold: float | None = 1.0,
    clip_pg_rho_threshold: float | None = 1.0,
    clip_c_threshold: float | None = 1.0,
    lambda_: float = 1.0,
) -> VTraceReturns:
    """Computes V-trace targets from log importance weights.

    Implements Espeholt et al. 2018, IMPALA, Sec. 4 / Remark 1, via the
    backward recursion

        v_s - V(x_s) = delta_s + gamma_s * c_s * (v_{s+1} - V(x_{s+1})),
        delta_s      = rho_s * (r_s + gamma_s * V(x_{s+1}) - V(x_s)),

    with ``rho_s = min(rho_bar, exp(log_rho_s))``,
    ``c_s = lambda_ * min(c_bar, exp(log_rho_s))``, ``V(x_T) = v_T =
    bootstrap_value``. The policy gradient advantage is
    ``min(rho_bar_pg, exp(log_rho_s)) * (r_s + gamma_s * v_{s+1} - V(x_s))``.

    Args:
      log_rhos: log importance weights ``log(pi/mu)`` of the taken actions,
        ``[T, B]``.
      discounts: per-step discounts ``gamma * (1 - done)``, ``[T, B]``.
      rewards: rewards ``r_s``, ``[T, B]``.
      values: baseline values ``V(x_s)``, ``[T, B]``.
      bootstrap_value: ``V(x_T)``, ``[B]``.
      clip_rho_threshold: ``rho_bar``; ``None`` disables clipping.
      clip_pg_rho_threshold: clipping of the rho in the policy gradient
        advantage; ``None`` disables clipping.
      clip_c_threshold: ``c_bar``; ``None`` disables clipping.
      lambda_: trace-cutting mixing factor (Remark 2), multiplies ``c_s``.

    Returns:
      ``VTraceReturns(vs, pg_advantages)``, both ``[T, B]``, without gradient.
    """
    _check_shapes(log_rhos, discounts, rewards, values, bootstrap_value)
    with torch.no_grad():
        log_rhos = log_rhos.detach()
        discounts = discounts.detach().to(values.dtype)
        rewards = rewards.detach().to(values.dtype)
        values = values.detach()
        bootstrap_value = bootstrap_value.detach().to(values.dtype)

        rhos = torch.exp(log_rhos.to(values.dtype))
        clipped_rhos = _clip_max(rhos, clip_rho_threshold)
        cs = lambda_ * _clip_max(rhos, clip_c_threshold)

        # V(x_{s+1}) for s = 0..T-1, with V(x_T) = bootstrap_value.
        values_t_plus_1 = torch.cat([values[1:], bootstrap_value.unsqueeze(0)], 0)
        deltas = clipped_rhos * (rewards + discounts * values_t_plus_1 - values)

        # Backward recursion on acc_s = v_s - V(x_s), with acc_T = 0.
        num_steps = values.shape[0]
        vs_minus_v = torch.empty_like(values)
        acc = torch.zeros_like(bootstrap_value)
        for s in range(num_steps - 1, -1, -1):
            acc = deltas[s] + discounts[s] * cs[s] * acc
            vs_minus_v[s] = acc
        vs = vs_minus_v + values

        vs_t_plus_1 = torch.cat([vs[1:], bootstrap_value.unsqueeze(0)], 0)
        clipped_pg_rhos = _clip_max(rhos, clip_pg_rho_threshold)
        pg_advantages = clipped_pg_rhos * (
            rewards + discounts * vs_t_plus_1 - values
        )
    return VTraceReturns(vs=vs, pg_advantages=pg_advantages)


def action_log_probs(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Log-probabilities of ``actions`` ``[T, B]`` under softmax ``logits``
    ``[T, B, A]``; returns ``[T, B]``."""
    if logits.shape[:-1] != actions.shape:
        raise ValueError(
            f"logits shape {tuple(logits.shape)} does not match actions shape "
            f"{tuple(actions.shape)} + [num_actions]."
        )
    log_probs = F.log_softmax(logits, dim=-1)
    return log_probs.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)


def from_logits(
    behaviour_logits: torch.Tensor,
    target_logits: torch.Tensor,
    actions: torch.Tensor,
    discounts: torch.Tensor,
    rewards: torch.Tensor,
    values: torch.Tensor,
    bootstrap_value: torch.Tensor,
    clip_rho_threshold: float | None = 1.0,
    clip_pg_rho_threshold: float | None = 1.0,
    clip_c_threshold: float | None = 1.0,
    lambda_: float = 1.0,
) -> VTraceReturnsWithLogProbs:
    """V-trace for softmax policies given behaviour and target logits.

    Computes ``log_rhos = log pi(a|x) - log mu(a|x)`` from the logits and
    calls :func:`from_importance_weights` (Espeholt et al. 2018, IMPALA,
    Sec. 4 / Remark 1). All outputs carry no gradient.

    Args:
      behaviour_logits: actor (behaviour policy ``mu``) logits, ``[T, B, A]``.
      target_logits: learner (target policy ``pi``) logits, ``[T, B, A]``.
      actions: taken actions, int64 ``[T, B]``.
      discounts, rewards, values, bootstrap_value, clip_*, lambda_: as in
        :func:`from_importance_weights`.

    Returns:
      ``VTraceReturnsWithLogProbs``; every field is ``[T, B]``.
    """
    if behaviour_logits.shape != target_logits.shape:
        raise ValueError(
            f"behaviour_logits {tuple(behaviour_logits.shape)} and "
            f"target_logits {tuple(target_logits.shape)} differ in shape."
        )
    with torch.no_grad():
        target_alp = action_log_probs(target_logits.detach(), actions)
        behaviour_alp = action_log_probs(behaviour_logits.detach(), actions)
        log_rhos = target_alp - behaviour_alp
    ret = from_importance_weights(
        log_rhos=log_rhos,
        discounts=discounts,
        rewards=rewards,
        values=values,
        bootstrap_value=bootstrap_value,
        clip_rho_threshold=clip_rho_threshold,
        clip_pg_rho_threshold=clip_pg_rho_threshold,
        clip_c_threshold=clip_c_threshold,
        lambda_=lambda_,
    )
    return VTraceReturnsWithLogProbs(
        vs=ret.vs,
        pg_advantages=ret.pg_advantages,
        log_rhos=log_rhos,
        behaviour_action_log_probs=behaviour_alp,
        target_action_log_probs=target_alp,
    )
