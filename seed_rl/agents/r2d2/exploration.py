"""Per-environment epsilon-greedy exploration (Ape-X, Horgan et al. 2018; R2D2)."""

from __future__ import annotations

import torch


def actor_epsilons(total_envs: int, base: float = 0.4, alpha: float = 7.0) -> torch.Tensor:
    """epsilon_i = base ** (1 + alpha * i / (N - 1)) for i in 0..N-1 (one env: base)."""
    if total_envs < 1:
        raise ValueError(f"total_envs must be >= 1, got {total_envs}")
    if total_envs == 1:
        return torch.tensor([base], dtype=torch.float64)
    i = torch.arange(total_envs, dtype=torch.float64)
    return base ** (1 + alpha * i / (total_envs - 1))


def epsilon_greedy(q_values: torch.Tensor, epsilon: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-row epsilon-greedy actions from ``q_values [B, A]`` and ``epsilon [B]``."""
    batch, num_actions = q_values.shape
    greedy = q_values.argmax(dim=-1)
    explore = torch.rand(batch, generator=generator, device=q_values.device) < epsilon
    random = torch.randint(num_actions, (batch,), generator=generator, device=q_values.device)
    return torch.where(explore, random, greedy)
