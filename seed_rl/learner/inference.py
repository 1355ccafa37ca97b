"""Learner-side inference over a batch of actor steps, and trajectory assembly.

One call handles a batch of :class:`StepRequest` (one per actor stream): it
looks up each environment's slot (cached per stream), gathers the recurrent
states, runs the agent once on the whole batch, stores the new states, writes
the step into the :class:`~seed_rl.learner.trajectories.TrajectoryStore` with one
tensor write per field, and hands the unrolls the step completed to
``unroll_sink`` as one :class:`~seed_rl.learner.trajectories.UnrollBatch`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from seed_rl.core.agent import ActInputs, Agent
from seed_rl.core.eval_envs import NO_EVAL_ENVS, EvalEnvs
from seed_rl.core.step import STEP_FIELD_NAMES, StepRequest
from seed_rl.learner.env_state import EnvStateTable
from seed_rl.core.unroll import UnrollBatch, UnrollShape
from seed_rl.learner.trajectories import TrajectoryStore


@dataclass
class StageTimes:
    """CPU seconds the inference thread spent per stage (``time.thread_time``), for benchmarks and logs."""

    forward: float = 0.0  # the agent's act() on the batch, with input and state gathering
    store: float = 0.0  # writing the step into the trajectory store and handing unrolls over
    batches: int = 0


class InferenceEngine:
    def __init__(
        self,
        agent: Agent,
        unroll: UnrollShape,
        unroll_sink: Callable[[UnrollBatch], None],
        params_lock: threading.Lock,
        eval_envs: EvalEnvs = NO_EVAL_ENVS,
    ):
        self.agent = agent
        self.unroll = unroll
        # IMPALA Table G.1: during training an episode ends where a life is lost; the actors'
        # episode statistics still count whole games.
        self.life_loss_ends_episode = unroll.life_loss_ends_episode
        self.eval_envs = eval_envs  # their steps are acted on, never written into trajectories
        self._sink = unroll_sink
        self._params_lock = params_lock
        self._lock = threading.Lock()  # guards the state table, the stream slots and the store
        self._states = EnvStateTable(agent.initial_core_state, agent.device)
        self._store = TrajectoryStore(unroll, agent.device)
        self._stream_slots: dict[int, np.ndarray] = {}
        self.env_steps = 0
        self.times = StageTimes()

    @property
    def num_envs(self) -> int:
        with self._lock:
            return len(self._states)

    @property
    def slot_capacity(self) -> int:
        """Slots allocated for environments' states and unrolls (bounded by the most ever connected at once)."""
        with self._lock:
            return self._states.capacity

    def _slots(self, request: StepRequest) -> np.ndarray:
        slots = self._stream_slots.get(request.stream_id)
        if slots is None or len(slots) != request.num_envs:
            slots = self._states.slots([(request.stream_id, i) for i in range(request.num_envs)])
            self._stream_slots[request.stream_id] = slots
        return slots

    def __call__(self, requests: Sequence[StepRequest]) -> list[np.ndarray]:
        started = time.thread_time()
        device = self.agent.device
        columns = {
            name: torch.from_numpy(np.concatenate([r.step[name] for r in requests])).to(device)
            for name in STEP_FIELD_NAMES
        }
        if self.life_loss_ends_episode:
            columns["done"] = columns["done"] | columns["life_lost"]
        host_index = np.concatenate(
            [np.arange(r.first_env_index, r.first_env_index + r.num_envs, dtype=np.int64) for r in requests]
        )
        env_index = torch.from_numpy(host_index).to(device)
        with self._lock:
            slots = np.concatenate([self._slots(r) for r in requests])
            index = torch.from_numpy(slots).to(device)
            state = self._states.states(index)
            with self._params_lock, torch.inference_mode():
                inputs = ActInputs(columns["observation"], columns["reward"], columns["done"], env_index)
                result = self.agent.act(inputs, state)
            self._states.scatter(index, result.core_state)
            actions = result.action.cpu().numpy()  # once per batch, after the forward pass
            forward_done = time.thread_time()
            columns["action"] = result.action
            finished = self._write_training_rows(slots, host_index, columns, result.outputs, state)
            self.env_steps += len(slots)
        if finished is not None:
            self._sink(finished)
        self.times.forward += forward_done - started
        self.times.store += time.thread_time() - forward_done
        self.times.batches += 1
        results, start = [], 0
        for r in requests:
            results.append(actions[start : start + r.num_envs])
            start += r.num_envs
        return results

    def _write_training_rows(self, slots: np.ndarray, env_index: np.ndarray, columns: dict, outputs: dict,
                             state: tuple) -> UnrollBatch | None:
        """Writes the step of the training environments into the store; evaluation environments' are dropped."""
        training = ~self.eval_envs.is_eval(env_index) if self.eval_envs.num_eval_envs else None
        if training is not None and not training.all():
            rows = torch.from_numpy(np.flatnonzero(training)).to(self.agent.device)
            slots = slots[training]
            columns = {name: value[rows] for name, value in columns.items()}
            outputs = {name: value[rows] for name, value in outputs.items()}
            state = tuple(s[rows] for s in state)
            if not len(slots):
                return None
        return self._store.write(slots, columns, outputs, state, self._states.capacity)

    def remove_stream(self, stream_id: int, num_envs: int) -> None:
        """Drops the partial unrolls and recurrent states of a stream that ended."""
        with self._lock:
            self._stream_slots.pop(stream_id, None)
            freed = self._states.remove([(stream_id, i) for i in range(num_envs)])
            self._store.reset(freed)
            moved = self._states.compaction()
            if moved is not None:  # most environments left: shrink, keeping the live ones' states and unrolls
                self._store.compact(moved, self._states.capacity)
                self._stream_slots = {stream: moved[slots] for stream, slots in self._stream_slots.items()}
