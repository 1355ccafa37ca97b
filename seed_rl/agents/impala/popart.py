"""PopArt: value targets normalised by running statistics, outputs preserved (Hessel et al. 2019).

"Preserving Outputs Precisely, while Adaptively Rescaling Targets" (van Hasselt
et al. 2016), as the IMPALA team used it to train one agent on Atari without
reward clipping ("Multi-task deep reinforcement learning with PopArt", Hessel
et al. 2019). The value head predicts a normalised value ``n(x)``; the value is
``v(x) = sigma * n(x) + mu``. After each update the statistics move towards the
batch's V-trace targets and the head's last linear layer is rescaled so that
``v(x)`` is unchanged for every input:

    w' = w * sigma / sigma'        b' = (sigma * b + mu - mu') / sigma'

The baseline learns ``(v_s - mu) / sigma`` and the policy gradient uses
advantages divided by ``sigma``, so neither grows with the scale of the returns.

The statistics are exponential moving averages of the targets' first and
second moments with step size ``beta``, debiased as Adam's moments are (so the
first batches are not pulled towards the initial zero); ``sigma`` is clipped to
``[1e-4, 1e6]`` as in Hessel et al. 2019.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

MIN_SCALE, MAX_SCALE = 1e-4, 1e6


def updated_moments(
    first: torch.Tensor, second: torch.Tensor, targets: torch.Tensor, step_size: float,
    mean_over_ranks: Callable[[torch.Tensor], torch.Tensor] = lambda moments: moments,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The moving averages of ``E[G]`` and ``E[G^2]`` after one batch of targets ``G`` (biased towards 0).

    ``mean_over_ranks``: with several learner ranks, each holding an equal share of the batch's
    targets, averages the ranks' ``[E[G], E[G^2]]`` into the whole batch's.
    """
    targets = targets.detach().double()
    batch_first, batch_second = mean_over_ranks(torch.stack([targets.mean(), (targets**2).mean()]))
    first = (1 - step_size) * first + step_size * batch_first
    second = (1 - step_size) * second + step_size * batch_second
    return first, second


def statistics(
    first: torch.Tensor, second: torch.Tensor, updates: int, step_size: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mu, sigma)`` from the moving averages after ``updates`` batches (debiased; ``(0, 1)`` before any)."""
    if updates == 0:
        return torch.zeros_like(first), torch.ones_like(first)
    correction = 1 - (1 - step_size) ** updates
    mean, mean_square = first / correction, second / correction
    scale = (mean_square - mean**2).clamp(min=0).sqrt().clamp(MIN_SCALE, MAX_SCALE)
    return mean, scale


def preserved_head(
    weight: torch.Tensor, bias: torch.Tensor, old: tuple[torch.Tensor, torch.Tensor],
    new: tuple[torch.Tensor, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """The last layer's ``(weight, bias)`` that give the same ``sigma * n(x) + mu`` under the ``new`` statistics."""
    (old_mean, old_scale), (new_mean, new_scale) = old, new
    ratio = (old_scale / new_scale).to(weight.dtype)
    return weight * ratio, ((old_scale * bias + old_mean - new_mean) / new_scale).to(bias.dtype)


def unnormalize(normalized: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return (normalized * scale + mean).to(normalized.dtype)


def normalize(values: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return ((values - mean) / scale).to(values.dtype)


class PopArtStatistics(nn.Module):
    """The moving moments, as buffers so they travel in the model's ``state_dict`` (and checkpoints)."""

    def __init__(self, step_size: float):
        super().__init__()
        self.step_size = step_size
        self.register_buffer("first_moment", torch.zeros((), dtype=torch.float64))
        self.register_buffer("second_moment", torch.zeros((), dtype=torch.float64))
        self.register_buffer("updates", torch.zeros((), dtype=torch.int64))

    def mean_and_scale(self) -> tuple[torch.Tensor, torch.Tensor]:
        return statistics(self.first_moment, self.second_moment, int(self.updates), self.step_size)

    def unnormalize(self, normalized: torch.Tensor) -> torch.Tensor:
        """``sigma * n + mu`` with the current statistics."""
        return unnormalize(normalized, *self.mean_and_scale())

    @torch.no_grad()
    def update(
        self, targets: torch.Tensor, head: nn.Linear,
        mean_over_ranks: Callable[[torch.Tensor], torch.Tensor] = lambda moments: moments,
    ) -> None:
        """Moves the statistics towards ``targets`` and rescales ``head`` so its unnormalised outputs stay."""
        old = self.mean_and_scale()
        first, second = updated_moments(
            self.first_moment, self.second_moment, targets, self.step_size, mean_over_ranks
        )
        self.first_moment.copy_(first)
        self.second_moment.copy_(second)
        self.updates += 1
        weight, bias = preserved_head(head.weight, head.bias, old, self.mean_and_scale())
        head.weight.copy_(weight)
        head.bias.copy_(bias)
