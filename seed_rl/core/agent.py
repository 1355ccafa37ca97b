"""The contract between the agent-independent learner core and an agent."""

from __future__ import annotations

import threading
from typing import NamedTuple, Protocol

import numpy as np
import torch

CoreState = tuple[torch.Tensor, ...]  # an agent's recurrent state, one tensor [B, ...] per part



class ActInputs(NamedTuple):
    """One inference batch: a row per environment, on the agent's device."""

    observation: torch.Tensor  # [B, ...]
    reward: torch.Tensor  # [B] float32, arrived with the observation
    done: torch.Tensor  # [B] bool, the observation starts an episode
    env_index: torch.Tensor  # [B] int64, actor_id * envs_per_actor + k (e.g. R2D2's epsilon_i)


class ActResult(NamedTuple):
    action: torch.Tensor  # [B] int64
    outputs: dict[str, torch.Tensor]  # per-environment tensors kept with the trajectory
    core_state: CoreState  # recurrent state after the step


class TrainResult(NamedTuple):
    """What one ``train_step`` reports back to the learner."""

    logs: dict[str, float]  # scalars for the summaries
    priorities: np.ndarray | None = None  # [B] new replay priorities of the batch's sequences (R2D2)
    skipped: bool = False  # the loss or gradient was not finite, so nothing was applied


def all_finite(*values: torch.Tensor) -> bool:
    """Whether every element of ``values`` is finite: an update from a NaN or inf loss or gradient norm is skipped."""
    return all(bool(torch.isfinite(v).all()) for v in values)


class Agent(Protocol):
    """What an agent provides to the learner core (and to ``seed_rl.evaluate``: ``load_for_evaluation``).

    ``act`` runs on the inference thread, ``train_step`` on the training thread.
    ``train_step`` must hold ``params_lock`` while it writes the parameters, and
    ``act`` is called under the same lock, so inference always sees a complete,
    newest set of parameters.
    """

    device: torch.device

    def initial_core_state(self, batch_size: int) -> CoreState: ...

    def act(self, inputs: ActInputs, core_state: CoreState) -> ActResult: ...

    def train_step(self, batch: dict, params_lock: threading.Lock) -> TrainResult: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...

    def load_for_evaluation(self, state: dict) -> None:
        """Loads what ``act`` needs from a ``state_dict()`` (no optimizer) and switches to evaluation mode.

        Raises KeyError for a state without it, RuntimeError for weights of another shape.
        """
