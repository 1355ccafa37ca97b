"""R2D2's recurrent dueling Q-network (Kapturowski et al. 2019, Sec. 2 and Table 2).

Torso features, the previous action (one-hot) and the previous reward feed an
LSTM; dueling value and advantage heads give Q-values. At an episode start the
LSTM state, the previous action and the previous reward are zeroed.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from seed_rl.networks.float32 import float32_region
from seed_rl.networks.recurrent import ResettingLSTM
from seed_rl.networks.torsos import make_torso


class R2D2Net(nn.Module):
    def __init__(
        self,
        observation_shape: tuple[int, ...],
        observation_dtype: str,
        num_actions: int,
        torso: str = "auto",
        lstm_size: int = 512,
        head_size: int = 512,
    ):
        super().__init__()
        self.num_actions = num_actions
        self.torso = make_torso(torso, observation_shape, observation_dtype)
        self.core = ResettingLSTM(self.torso.output_size + num_actions + 1, lstm_size)
        self.value = nn.Sequential(nn.Linear(lstm_size, head_size), nn.ReLU(), nn.Linear(head_size, 1))
        self.advantage = nn.Sequential(nn.Linear(lstm_size, head_size), nn.ReLU(), nn.Linear(head_size, num_actions))

    def initial_state(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.core.initial_state(batch_size)

    def forward(
        self,
        observation: torch.Tensor,
        reward: torch.Tensor,
        done: torch.Tensor,
        prev_action: torch.Tensor,
        core_state: tuple[torch.Tensor, torch.Tensor],
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Time-major: inputs ``[T, B, ...]``; returns Q-values ``[T, B, A]`` and the LSTM state."""
        steps, batch = observation.shape[:2]
        features = self.torso(observation.reshape(steps * batch, *observation.shape[2:])).reshape(steps, batch, -1)
        keep = (~done).float().unsqueeze(-1)
        one_hot = F.one_hot(prev_action, self.num_actions).float() * keep
        inputs = torch.cat([features, one_hot, reward.unsqueeze(-1) * keep], dim=-1)
        outputs, core_state = self.core(inputs, done, core_state)
        with float32_region(outputs):
            outputs = outputs.float()
            advantage = self.advantage(outputs)
            q = self.value(outputs) + advantage - advantage.mean(dim=-1, keepdim=True)
        return q, core_state
