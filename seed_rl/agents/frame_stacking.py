"""Any agent, fed single frames: the learner stacks them (SEED RL's ``stack_frames``).

Actors of families that stack frames (Atari, Football) send one frame per
step, so the wire, the trajectory store and R2D2's replay hold each frame once
instead of ``S`` times. :class:`FrameStackingAgent` keeps each environment's
last ``S - 1`` frames as the first part of its recurrent state, so the
learner's state table carries them between steps and every unroll starts with
the frames before it (``Unroll.initial_core_state``); training rebuilds the
stacks of a whole batch in one gather (``seed_rl/core/frame_stack.py``).
"""

from __future__ import annotations

import threading

import numpy as np
import torch

from seed_rl.core.agent import ActInputs, ActResult, Agent, CoreState, TrainResult
from seed_rl.core.frame_stack import stack_frames


class FrameStackingAgent:
    """Wraps ``inner``, an agent built for stacked observations, to take single frames.

    The core state is ``(last S - 1 frames [B, S - 1, *frame], *inner's state)``.
    """

    def __init__(self, inner: Agent, frame_stack: int, frame_shape: tuple[int, ...], frame_dtype: str):
        if frame_stack < 2:
            raise ValueError(f"frame stacking needs frame_stack >= 2, got {frame_stack}")
        self.inner = inner
        self.device = inner.device
        self.frame_stack = frame_stack
        self._frame_shape = tuple(frame_shape)
        self._frame_dtype = getattr(torch, np.dtype(frame_dtype).name)

    # What tools read from an agent (its network and config) is the inner agent's.
    @property
    def model(self) -> torch.nn.Module:
        return self.inner.model

    @property
    def config(self):
        return self.inner.config

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.inner.optimizer

    def initial_core_state(self, batch_size: int) -> CoreState:
        frames = torch.zeros((batch_size, self.frame_stack - 1, *self._frame_shape), dtype=self._frame_dtype)
        return (frames, *self.inner.initial_core_state(batch_size))

    @torch.no_grad()
    def act(self, inputs: ActInputs, core_state: CoreState) -> ActResult:
        stacked, last = stack_frames(core_state[0], inputs.observation.unsqueeze(0), inputs.done.unsqueeze(0))
        result = self.inner.act(inputs._replace(observation=stacked[0]), core_state[1:])
        return ActResult(result.action, result.outputs, (last, *result.core_state))

    def stacked_batch(self, batch: dict) -> dict:
        """``batch`` as the inner agent trains on it: stacked observations, its own initial state."""
        state = batch["initial_core_state"]
        stacked, _ = stack_frames(state[0], batch["observation"], batch["done"])
        return dict(batch, observation=stacked, initial_core_state=tuple(state[1:]))

    def train_step(self, batch: dict, params_lock: threading.Lock) -> TrainResult:
        return self.inner.train_step(self.stacked_batch(batch), params_lock)

    def state_dict(self) -> dict:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)

    def load_for_evaluation(self, state: dict) -> None:
        self.inner.load_for_evaluation(state)
