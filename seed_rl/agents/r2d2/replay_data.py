"""R2D2's path from unrolls to batches: prioritized replay at a held replay ratio."""

from __future__ import annotations

from typing import Any, Callable

import logging

import numpy as np
import torch

from seed_rl.core.unroll import Unroll, UnrollBatch
from seed_rl.replay.prioritized import PrioritizedReplay

log = logging.getLogger(__name__)


def _to_tensors(value):
    """numpy arrays (also inside dicts and tuples) as tensors sharing their memory."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, dict):
        return {k: _to_tensors(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_to_tensors(v) for v in value)
    return value


def _to_arrays(value):
    if isinstance(value, torch.Tensor):
        return value.numpy()
    if isinstance(value, dict):
        return {k: _to_arrays(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_to_arrays(v) for v in value)
    return value


def _unroll_to_checkpoint(unroll: Unroll) -> dict:
    # torch.save streams tensor storages straight into the file, while pickled
    # numpy arrays are first copied into one in-memory pickle: with a replay of
    # several GB that copy exhausted a 24 GB machine. Step fields are stored
    # flat beside agent_outputs and initial_core_state, the format since replays
    # were first checkpointed.
    return {**_to_tensors(unroll.steps), "agent_outputs": _to_tensors(unroll.agent_outputs),
            "initial_core_state": _to_tensors(unroll.initial_core_state)}


def _unroll_from_checkpoint(fields: dict) -> Unroll:
    fields = _to_arrays(fields)
    outputs, state = fields.pop("agent_outputs"), fields.pop("initial_core_state")
    return Unroll(steps={k: v for k, v in fields.items() if v is not None}, agent_outputs=outputs,
                  initial_core_state=state)


class ReplayData:
    """Inserts every sequence into a prioritized replay and samples training batches.

    The replay ratio is the number of times each inserted step is trained on,
    on average: training waits for data while ``trained steps >= replay_ratio *
    inserted steps``, and the learner stops pulling unrolls (so the actors wait)
    while it is below. New sequences get ``initial_priority(unroll)`` when it
    is given (R2D2's TD-error priority from acting-time Q-values, as SEED RL
    does), else the largest priority seen so far (Schaul et al. 2016).
    """

    def __init__(
        self,
        replay: PrioritizedReplay,
        batch_size: int,
        replay_ratio: float,
        min_size: int,
        trained_steps_per_sequence: int,
        new_steps_per_sequence: int,
        checkpoint_contents: bool = True,
        initial_priority: Callable[[Unroll], float] | None = None,
    ):
        self.replay = replay
        self.batch_size = batch_size
        self.replay_ratio = replay_ratio
        self.min_size = min_size
        self.trained_steps_per_sequence = trained_steps_per_sequence
        self.new_steps_per_sequence = new_steps_per_sequence
        self.checkpoint_contents = checkpoint_contents
        self.initial_priority = initial_priority
        self.inserted_steps = 0
        self.trained_steps = 0
        self.max_priority = 1.0

    def add(self, unrolls: UnrollBatch) -> None:
        sequences = unrolls.unrolls()
        if self.initial_priority is None:
            priorities = np.full(len(sequences), self.max_priority)
        else:
            priorities = np.array([self.initial_priority(u) for u in sequences])
        self.replay.insert(sequences, priorities)
        self.inserted_steps += self.new_steps_per_sequence * len(sequences)

    def wants_data(self) -> bool:
        if len(self.replay) < self.min_size:
            return True
        return self.trained_steps >= self.replay_ratio * self.inserted_steps

    def sample(self) -> tuple[UnrollBatch, dict[str, np.ndarray], Any]:
        ids, unrolls, weights = self.replay.sample(self.batch_size)
        self.trained_steps += self.batch_size * self.trained_steps_per_sequence
        return UnrollBatch.from_unrolls(unrolls, torch.device("cpu")), {"importance_weights": weights}, ids

    def after_train(self, handle: Any, priorities: np.ndarray | None) -> None:
        if priorities is None:
            raise ValueError("R2D2's train_step must return per-sequence priorities")
        self.replay.update_priorities(handle, priorities)
        self.max_priority = max(self.max_priority, float(np.max(priorities)))

    def state_dict(self) -> dict:
        state = {
            "inserted_steps": self.inserted_steps,
            "trained_steps": self.trained_steps,
            "max_priority": self.max_priority,
        }
        if self.checkpoint_contents:
            replay = self.replay.state_dict()
            replay["items"] = [_unroll_to_checkpoint(u) for u in replay["items"]]
            state["replay"] = replay
        return state

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        self.inserted_steps = state["inserted_steps"]
        self.trained_steps = state["trained_steps"]
        self.max_priority = state["max_priority"]
        if "replay" in state:
            replay = dict(state["replay"])
            replay["items"] = [_unroll_from_checkpoint(u) for u in replay["items"]]
            self.replay.load_state_dict(replay)
            log.info("replay holds %d sequences from the checkpoint", len(self.replay))
        else:
            log.info("the checkpoint holds no replay contents (--nocheckpoint_replay): refilling from empty")
