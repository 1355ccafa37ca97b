"""n-step double-Q targets with value rescaling for R2D2.

References:
  * Kapturowski et al. 2019, "Recurrent Experience Replay in Distributed
    Reinforcement Learning" (R2D2), Sec. 2: the n-step target
    ``y_t = h(sum_{k=0}^{n-1} r_{t+k} gamma^k + gamma^n h^{-1}(Q(s_{t+n}, a*; theta^-)))``
    with ``a* = argmax_a Q(s_{t+n}, a; theta)`` (double Q-learning).
  * Pohlen et al. 2018, "Observe and Look Further", Sec. 3.2: the value
    rescaling ``h`` (see :mod:`seed_rl.agents.r2d2.value_rescaling`).
  * van Hasselt et al. 2016, "Deep Reinforcement Learning with Double
    Q-learning": action selection by the online network, evaluation by the
    target network.

Tensors are time-major: ``[L, B, ...]`` for a sequence of ``L`` steps and a
batch of ``B`` sequences. Targets are constants for the loss: everything here
is computed under ``torch.no_grad()`` and returned detached.
"""

from __future__ import annotations

import torch

from seed_rl.agents.r2d2.value_rescaling import (
    DEFAULT_EPS,
    inverse_value_rescale,
    value_rescale,
)


def double_q_bootstrap(online_q: torch.Tensor, target_q: torch.Tensor) -> torch.Tensor:
    """Double-Q bootstrap values ``Q_target(s, argmax_a Q_online(s, a))``.

    The online network selects the action, the target network evaluates it
    (van Hasselt et al. 2016; used in R2D2, Kapturowski et al. 2019, Sec. 2).
    Ties in the online argmax resolve as ``torch.argmax`` does.

    Args:
      online_q: online-network Q-values, ``[L, B, A]``.
      target_q: target-network Q-values, ``[L, B, A]`` (same shape).

    Returns:
      ``[L, B]`` tensor with ``target_q[l, b, argmax_a online_q[l, b, a]]``,
      detached (computed under ``no_grad``), in ``target_q``'s dtype.
    """
    if online_q.shape != target_q.shape:
        raise ValueError(
            f"online_q and target_q shapes differ: {tuple(online_q.shape)} vs "
            f"{tuple(target_q.shape)}"
        )
    if online_q.dim() != 3:
        raise ValueError(f"expected [L, B, A] Q-values, got shape {tuple(online_q.shape)}")
    with torch.no_grad():
        best = torch.argmax(online_q, dim=-1, keepdim=True)  # [L, B, 1]
        return torch.gather(target_q, -1, best).squeeze(-1).detach()


def n_step_targets(
    rewards: torch.Tensor,
    discounts: torch.Tensor,
    bootstrap_values: torch.Tensor,
    n: int,
    rescale: bool = True,
    eps: float = DEFAULT_EPS,
) -> torch.Tensor:
    """R2D2 n-step (value-rescaled) Q-learning targets for ``t = 0 .. L-2``.

    Kapturowski et al. 2019, Sec. 2 (with per-step discounts); value rescaling
    ``h`` from Pohlen et al. 2018, Sec. 3.2.

    Convention: step ``i`` of a sequence holds observation ``s_i``;
    ``rewards[i]`` and ``discounts[i] = gamma * (1 - done_i)`` are the reward
    and discount that ARRIVED WITH ``s_i``, i.e. that result from action
    ``a_{i-1}`` taken in ``s_{i-1}`` (so ``rewards[0]``/``discounts[0]`` belong
    to the transition *into* the first step and are never used).
    ``bootstrap_values[i] = Q_target(s_i, argmax_a Q_online(s_i, a))``, in the
    rescaled space when ``rescale`` is true (see :func:`double_q_bootstrap`).

    For ``t = 0 .. L-2`` and ``m = min(n, L-1-t)`` (the horizon is truncated
    at the end of the sequence)::

        G_t = sum_{k=0}^{m-1} (prod_{j=1}^{k} d_{t+j}) r_{t+k+1}
              + (prod_{j=1}^{m} d_{t+j}) h^{-1}(bootstrap_values[t+m])
        target_t = h(G_t)

    (without ``h`` / ``h^{-1}`` when ``rescale`` is false). An episode end at
    step ``i`` (``d_i = 0``) keeps ``r_i`` but cuts all later rewards and the
    bootstrap.

    Computed with a Python loop over the ``n`` horizon steps only; each step is
    a vectorised ``[L-1, B]`` tensor operation.

    Args:
      rewards: ``[L, B]`` rewards.
      discounts: ``[L, B]`` per-step discounts ``gamma * (1 - done)``.
      bootstrap_values: ``[L, B]`` double-Q bootstrap values.
      n: the number of steps ``n >= 1``.
      rescale: whether to apply ``h^{-1}`` to the bootstrap values and ``h``
        to the returns.
      eps: the value-rescaling ``eps``.

    Returns:
      ``[L-1, B]`` targets, detached, in ``rewards``' dtype.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if rewards.dim() != 2:
        raise ValueError(f"expected [L, B] rewards, got shape {tuple(rewards.shape)}")
    if discounts.shape != rewards.shape or bootstrap_values.shape != rewards.shape:
        raise ValueError(
            "rewards, discounts and bootstrap_values must have the same [L, B] shape, got "
            f"{tuple(rewards.shape)}, {tuple(discounts.shape)}, "
            f"{tuple(bootstrap_values.shape)}"
        )
    length = rewards.shape[0]
    if length < 2:
        raise ValueError(f"need a sequence of at least 2 steps, got L={length}")

    with torch.no_grad():
        dtype = rewards.dtype
        discounts = discounts.to(dtype)
        values = bootstrap_values.to(dtype)
        if rescale:
            values = inverse_value_rescale(values, eps)

        num_targets = length - 1
        # Pad past the end of the sequence with reward 0 and discount 1, so
        # steps beyond the truncated horizon m add nothing and leave the
        # running discount product unchanged.
        pad = n - 1
        r_pad = torch.cat([rewards, rewards.new_zeros((pad,) + rewards.shape[1:])])
        d_pad = torch.cat([discounts, discounts.new_ones((pad,) + discounts.shape[1:])])

        returns = torch.zeros_like(rewards[:num_targets])
        discount_prod = torch.ones_like(returns)
        for k in range(n):
            # Step t + k + 1 for all t = 0 .. L-2 at once.
            returns = returns + discount_prod * r_pad[k + 1 : k + 1 + num_targets]
            discount_prod = discount_prod * d_pad[k + 1 : k + 1 + num_targets]

        # Bootstrap from step t + m = min(t + n, L - 1).
        boot_index = torch.clamp(
            torch.arange(num_targets, device=rewards.device) + n, max=length - 1
        )
        returns = returns + discount_prod * values.index_select(0, boot_index)

        if rescale:
            returns = value_rescale(returns, eps)
        return returns.detach()


def truncation_mask(done: torch.Tensor, truncated: torch.Tensor, n: int) -> torch.Tensor:
    """Which n-step targets are valid when time limits cut episodes: ``[L, B] -> [L-1, B]``.

    Same step convention as :func:`n_step_targets`. The target of step ``t``
    looks at steps ``t+1 .. t+m`` (``m = min(n, L-1-t)``); if the first episode
    end among them is a truncation (a time limit, not a terminal state), the
    target would treat a cut-off episode as finished, so its mask is 0 (Pardo et
    al. 2018, "Time Limits in Reinforcement Learning"). Otherwise the mask is 1.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if done.shape != truncated.shape or done.dim() != 2 or done.shape[0] < 2:
        raise ValueError(f"done and truncated must both be [L >= 2, B], got {tuple(done.shape)}, {tuple(truncated.shape)}")
    length = done.shape[0]
    mask = torch.ones(length - 1, done.shape[1], dtype=torch.bool, device=done.device)
    open_episode = torch.ones_like(mask)
    for k in range(1, n + 1):
        if k > length - 1:
            break
        window_done = done[k:]  # step t + k for t = 0 .. L-1-k
        window_truncated = truncated[k:]
        rows = slice(0, length - k)
        ends_here = window_done & open_episode[rows]
        mask[rows] &= ~(ends_here & window_truncated)
        open_episode[rows] &= ~window_done
    return mask
