"""Trajectory assembly on the learner, as tensors: no per-step Python objects.

:class:`TrajectoryStore` keeps one preallocated, time-major buffer per field
(``[T + 1, slots, ...]``) on the model's device. Each inference batch is
written with one indexed write per field, at each environment's own position
in its unroll. An environment whose unroll is full hands it over inside an
:class:`UnrollBatch` (all environments that finished in that batch together,
already time-major), and its last ``overlap`` steps move to the front of the
next unroll. Recurrent states are kept only where an unroll starts, as SEED
RL's ``UnrollStore`` does, never per step.

Each slot's unrolls carry a *lineage* (a stream of unrolls with no gap, named
by an id unique over the store's life) and their *index* in it, so a replay
can store the steps that consecutive unrolls share once.
"""

from __future__ import annotations

import numpy as np
import torch

from seed_rl.core.unroll import UnrollBatch, UnrollShape

# Indexed copies of whole rows. On the CPU, numpy's fancy indexing copies each
# row as one block, 20-40x faster than torch's element-wise index_put and
# index_select (measured here for 84x84x4 uint8 rows); both views share memory.
def _put(buffer: torch.Tensor, index: tuple, value: torch.Tensor) -> None:
    """``buffer[index] = value``; ``index`` holds host int64 arrays."""
    if buffer.device.type == "cpu":
        buffer.numpy()[index] = value.numpy()
    else:
        buffer[tuple(torch.from_numpy(i).to(buffer.device) for i in index)] = value


def _take(buffer: torch.Tensor, index: tuple) -> torch.Tensor:
    """A copy of ``buffer[index]``; ``index`` holds slices and host int64 arrays."""
    if buffer.device.type == "cpu":
        return torch.from_numpy(buffer.numpy()[index])
    return buffer[tuple(i if isinstance(i, slice) else torch.from_numpy(i).to(buffer.device) for i in index)]


def _carry(buffer: torch.Tensor, shift: int, slots: np.ndarray) -> None:
    """Moves rows ``shift:`` of ``slots`` to the front: ``buffer[:-shift, slots] = buffer[shift:, slots]``."""
    if shift >= buffer.shape[0]:
        return
    rows = np.arange(buffer.shape[0] - shift)
    source = _take(buffer, (slice(shift, None), slots))
    _put(buffer, (rows[:, None], slots[None, :]), source)


class TrajectoryStore:
    """Unrolls of ``shape.steps`` steps for many environments, one slot each.

    Consecutive unrolls of a slot share ``shape.overlap`` steps: 1 for IMPALA (the
    bootstrap step), more for R2D2's overlapping sequences. Slots come from
    :class:`~seed_rl.learner.env_state.EnvStateTable`; :meth:`reset` starts a
    reused slot afresh.

    A slot gets a new lineage id whenever it starts afresh (its first write, or
    the first after :meth:`reset`); :meth:`compact` keeps each slot's lineage.
    Handed-over unrolls carry it with their index in it (0, 1, ...), see
    :class:`~seed_rl.core.unroll.UnrollBatch`.
    """

    def __init__(self, shape: UnrollShape, device: torch.device | str = "cpu"):
        length, overlap = shape.steps - 1, shape.overlap
        self.shape = shape
        self.last_row = length  # a buffer's rows are 0..last_row
        self.overlap = overlap
        self.device = torch.device(device)
        self._capacity = 0
        self._position = np.zeros(0, np.int64)  # next row to write, per slot
        self._lineage = np.zeros(0, np.int64)  # per slot; -1: none yet, the next write starts one
        self._handed = np.zeros(0, np.int64)  # unrolls handed over in the slot's lineage
        self._next_lineage = 0
        self._steps: dict[str, torch.Tensor] = {}  # field -> [steps, capacity, ...]
        self._outputs: dict[str, torch.Tensor] = {}
        # Unrolls start every ``period`` steps, so rows 0, period, 2 * period, ...
        # each become some unroll's first row: the state before those rows is
        # kept, [starts, capacity, ...] per state tensor, and nothing else.
        self.period = shape.new_steps
        self._starts = -(-shape.steps // self.period)
        # Where the last row is such a row (IMPALA's: row T starts the next unroll), its state is
        # written after the hand-over, straight to the entry the carry would move it to, so no
        # entry is kept for it: with frames stacked on the learner, that state holds 3 frames.
        self._last_row_starts = overlap > 0 and length % self.period == 0
        self._starts -= int(self._last_row_starts)
        self._start_states: list[torch.Tensor] = []

    @property
    def capacity(self) -> int:
        return self._capacity

    def reset(self, slots) -> None:
        """Forgets the partial unrolls of ``slots`` (their environments left)."""
        slots = np.asarray(slots, np.int64)
        slots = slots[slots < self._capacity]
        self._position[slots] = 0
        self._lineage[slots] = -1
        self._handed[slots] = 0

    def compact(self, moved: np.ndarray, capacity: int) -> None:
        """Keeps the slots ``moved`` maps (``moved[old] = new``, -1: dropped) in buffers of ``capacity`` slots."""
        if not self._steps:
            return
        old = np.flatnonzero(moved[: self._capacity] >= 0)
        new = moved[old]

        def moved_buffer(buffer: torch.Tensor) -> torch.Tensor:
            fresh = torch.zeros((buffer.shape[0], capacity) + tuple(buffer.shape[2:]), dtype=buffer.dtype,
                                device=self.device)
            fresh[:, torch.from_numpy(new).to(self.device)] = buffer[:, torch.from_numpy(old).to(self.device)]
            return fresh

        self._steps = {k: moved_buffer(v) for k, v in self._steps.items()}
        self._outputs = {k: moved_buffer(v) for k, v in self._outputs.items()}
        self._start_states = [moved_buffer(s) for s in self._start_states]
        def moved_slots(values: np.ndarray, fill: int) -> np.ndarray:
            fresh = np.full(capacity, fill, np.int64)
            fresh[new] = values[old]
            return fresh

        self._position = moved_slots(self._position, 0)
        self._lineage = moved_slots(self._lineage, -1)
        self._handed = moved_slots(self._handed, 0)
        self._capacity = capacity

    def _buffers(self):
        yield from self._steps.values()
        yield from self._outputs.values()

    def _allocate(self, capacity: int, step: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor],
                  state: tuple[torch.Tensor, ...]) -> None:
        rows = self.last_row + 1

        def grown(old: torch.Tensor | None, like: torch.Tensor, leading: int) -> torch.Tensor:
            new = torch.zeros((leading, capacity) + tuple(like.shape[1:]), dtype=like.dtype, device=self.device)
            if old is not None:
                new[:, : old.shape[1]] = old
            return new

        self._steps = {k: grown(self._steps.get(k), v, rows) for k, v in step.items()}
        self._outputs = {k: grown(self._outputs.get(k), v, rows) for k, v in outputs.items()}
        old_states = self._start_states or [None] * len(state)
        self._start_states = [grown(old, s, self._starts) for old, s in zip(old_states, state)]
        added = capacity - self._capacity
        self._position = np.concatenate([self._position, np.zeros(added, np.int64)])
        self._lineage = np.concatenate([self._lineage, np.full(added, -1, np.int64)])
        self._handed = np.concatenate([self._handed, np.zeros(added, np.int64)])
        self._capacity = capacity

    @torch.no_grad()
    def write(
        self,
        slots: np.ndarray,
        step: dict[str, torch.Tensor],
        outputs: dict[str, torch.Tensor],
        state_before: tuple[torch.Tensor, ...],
        capacity: int,
    ) -> UnrollBatch | None:
        """Writes one step of the environments in ``slots``; returns the unrolls this step completed.

        Args:
          slots: int64 ``[N]``, distinct slot of each environment.
          step: each of TRAJECTORY_FIELDS, ``[N, ...]``.
          outputs: the agent outputs of the step, each ``[N, ...]``.
          state_before: the recurrent state each environment had before the step.
          capacity: the slot table's capacity (buffers grow to it).
        """
        if capacity > self._capacity or not self._steps:
            self._allocate(max(capacity, self._capacity), step, outputs, state_before)
        fresh = slots[self._lineage[slots] < 0]
        if len(fresh):
            self._lineage[fresh] = np.arange(self._next_lineage, self._next_lineage + len(fresh))
            self._next_lineage += len(fresh)
        rows = self._position[slots]
        for name, value in step.items():
            _put(self._steps[name], (rows, slots), value.to(self.device))
        for name, value in outputs.items():
            _put(self._outputs[name], (rows, slots), value.to(self.device))
        starts = rows % self.period == 0
        last_row = (rows == self.last_row) & starts if self._last_row_starts else np.zeros(len(rows), bool)
        self._put_start_states(state_before, starts & ~last_row, rows // self.period, slots)
        rows = rows + 1
        self._position[slots] = rows
        finished = slots[rows == self.last_row + 1]
        if len(finished) == 0:
            return None
        unrolls = self._hand_over(finished)
        self._put_start_states(state_before, last_row, np.full(len(rows), self._starts - 1), slots)
        return unrolls

    def _put_start_states(self, state_before: tuple[torch.Tensor, ...], which: np.ndarray, entries: np.ndarray,
                          slots: np.ndarray) -> None:
        """Keeps ``state_before[i]`` as start state ``entries[i]`` of ``slots[i]`` where ``which[i]``."""
        if not state_before or not which.any():
            return
        where = np.flatnonzero(which)
        at = (entries[where], slots[where])
        for buffer, value in zip(self._start_states, state_before):
            _put(buffer, at, value.to(self.device)[torch.from_numpy(where).to(self.device)])

    def _hand_over(self, finished: np.ndarray) -> UnrollBatch:
        columns = (slice(None), finished)
        unrolls = UnrollBatch(
            steps={name: _take(buffer, columns) for name, buffer in self._steps.items()},
            agent_outputs={k: _take(v, columns) for k, v in self._outputs.items()},
            initial_core_state=tuple(_take(s, (0, finished)) for s in self._start_states),
            lineage=torch.from_numpy(self._lineage[finished]).to(self.device),
            index=torch.from_numpy(self._handed[finished]).to(self.device),
        )
        self._handed[finished] += 1
        if self.overlap > 0:
            for buffer in self._buffers():
                _carry(buffer, self.period, finished)
            for buffer in self._start_states:
                _carry(buffer, 1, finished)
        self._position[finished] = self.overlap
        return unrolls
