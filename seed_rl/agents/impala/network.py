"""IMPALA's actor-critic network: torso, optional LSTM core, policy and baseline heads."""

from __future__ import annotations

import torch
from torch import nn

from seed_rl.agents.impala.popart import PopArtStatistics
from seed_rl.networks.float32 import float32_region
from seed_rl.networks.initialization import initialize_actor_critic
from seed_rl.networks.recurrent import ResettingLSTM
from seed_rl.networks.torsos import make_torso


class ActorCriticNet(nn.Module):
    def __init__(
        self,
        observation_shape: tuple[int, ...],
        observation_dtype: str,
        num_actions: int,
        torso: str = "auto",
        use_lstm: bool = False,
        lstm_size: int = 256,
        weight_init: str = "torch",
        popart_step_size: float | None = None,
    ):
        super().__init__()
        self.torso = make_torso(torso, observation_shape, observation_dtype)
        features = self.torso.output_size
        self.core = ResettingLSTM(features, lstm_size) if use_lstm else None
        if self.core is not None:
            features = lstm_size
        self.policy = nn.Linear(features, num_actions)
        self.baseline = nn.Linear(features, 1)
        initialize_actor_critic(weight_init, self.torso, self.policy, self.baseline)
        # With PopArt the baseline head predicts normalised values; these statistics map them back.
        self.value_statistics = PopArtStatistics(popart_step_size) if popart_step_size is not None else None

    def initial_state(self, batch_size: int) -> tuple[torch.Tensor, ...]:
        return self.core.initial_state(batch_size) if self.core is not None else ()

    def forward(
        self, observation: torch.Tensor, done: torch.Tensor, core_state: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
        """Time-major forward: ``observation [T, B, ...]``, ``done [T, B]``.

        Returns policy logits ``[T, B, A]``, baseline values ``[T, B]`` (normalised ones with PopArt: see
        :attr:`value_statistics`) and the new core state.
        """
        steps, batch = observation.shape[:2]
        features = self.torso(observation.reshape(steps * batch, *observation.shape[2:]))
        features = features.reshape(steps, batch, -1)
        if self.core is not None:
            features, core_state = self.core(features, done, core_state)
        with float32_region(features):
            features = features.float()
            return self.policy(features), self.baseline(features).squeeze(-1), core_state
