"""An LSTM core that resets its state at episode boundaries inside an unroll."""

from __future__ import annotations

import torch
from torch import nn

from seed_rl.networks.float32 import float32_region


class ResettingLSTM(nn.Module):
    """LSTM over time-major inputs whose state is zeroed where ``done`` is set.

    ``done[t]`` marks that input ``t`` is the first of a new episode, so the state
    carried into step ``t`` is reset before the step, on the learner's inference
    path and on its training path alike.
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.cell = nn.LSTMCell(input_size, hidden_size)
        self.hidden_size = hidden_size

    def initial_state(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        zeros = torch.zeros(batch_size, self.hidden_size)
        return zeros, zeros.clone()

    def forward(
        self, inputs: torch.Tensor, done: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        h, c = state
        outputs = []
        with float32_region(inputs):
            inputs = inputs.float()
            for t in range(inputs.shape[0]):
                keep = (~done[t]).float().unsqueeze(-1)
                h, c = self.cell(inputs[t], (h * keep, c * keep))
                outputs.append(h)
        return torch.stack(outputs), (h, c)
