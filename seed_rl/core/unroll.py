"""Trajectories as the learner hands them to training: one environment's :class:`Unroll`, or many as an
:class:`UnrollBatch` of time-major tensors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from seed_rl.core.step import STEP_FIELD_NAMES, STEP_FIELDS


# What the learner records for each step of a trajectory: the step's fields and the action chosen.
TRAJECTORY_FIELDS: tuple[str, ...] = (*STEP_FIELD_NAMES, "action")


@dataclass(frozen=True)
class UnrollShape:
    """How the learner cuts each environment's steps into unrolls: an agent's builder makes it, and the
    inference engine, the trajectory store and the learner's frame count take it whole.

    ``steps``: the steps each unroll holds (IMPALA: ``--unroll_length`` + 1, the last one bootstrapping;
    R2D2: burn-in + ``--unroll_length`` + 1). ``overlap``: the steps it shares with its environment's
    previous unroll (IMPALA 1; R2D2's sequences overlap by more). ``life_loss_ends_episode``: training
    treats a lost life (``life_lost``) as the end of an episode.
    """

    steps: int
    overlap: int = 1
    life_loss_ends_episode: bool = False

    def __post_init__(self):
        if self.steps < 2:
            raise ValueError(f"an unroll holds at least 2 steps, got {self.steps}")
        if not 0 <= self.overlap < self.steps:
            raise ValueError(f"unroll overlap must be in [0, {self.steps - 1}], got {self.overlap}")

    @property
    def new_steps(self) -> int:
        """Steps each unroll adds to its environment's stream (those not shared with the previous one)."""
        return self.steps - self.overlap


@dataclass
class Unroll:
    """``length + 1`` consecutive steps of one environment, as host arrays.

    ``steps`` maps each of :data:`TRAJECTORY_FIELDS` to ``[length + 1, ...]``:
    step ``t`` holds the observation seen at ``t``, the reward and done flag that
    arrived with it (the result of action ``t - 1``), ``truncated`` where
    ``done`` ends an episode cut by a time limit (Pardo et al. 2018: agents may
    bootstrap through it rather than treat it as terminal; absent means none),
    and the action chosen at ``t``. ``agent_outputs`` are the outputs of that
    choice (e.g. behaviour logits). Consecutive unrolls share steps, so the last
    step bootstraps the next unroll's first. ``initial_core_state`` is the
    recurrent state before step 0.

    ``lineage`` and ``index`` say where the unroll stands in its environment's
    stream (see :class:`UnrollBatch`); -1 where unknown, and such an unroll is
    never assumed to share steps with another.
    """

    steps: dict[str, np.ndarray]
    agent_outputs: dict[str, np.ndarray]
    initial_core_state: tuple[np.ndarray, ...]
    lineage: int = -1
    index: int = -1


def _step_field(unroll: Unroll, name: str) -> np.ndarray:
    """``unroll.steps[name]``, or zeros for an optional step field the unroll was made without."""
    if name in unroll.steps:
        return unroll.steps[name]
    field = next(f for f in STEP_FIELDS if f.name == name and not f.required)  # StopIteration: a required one
    observation = unroll.steps["observation"]
    return field.zeros(len(observation), observation.shape[1:], observation.dtype.name)


@dataclass
class UnrollBatch:
    """``F`` unrolls of ``T + 1`` steps, time-major: ``steps`` maps each of TRAJECTORY_FIELDS to ``[T + 1, F, ...]``.

    Step conventions are :class:`Unroll`'s.
    ``initial_core_state`` holds the recurrent state before step 0, ``[F, ...]``.

    Continuity, optional int64 ``[F]``: ``lineage`` names one uninterrupted
    stream of unrolls of one environment, and ``index`` counts the unrolls of
    that stream (0 for its first). Unrolls ``index = k`` and ``k + 1`` of one
    lineage share ``overlap`` steps (the trajectory store's): the last
    ``overlap`` steps of ``k`` are the first ``overlap`` steps of ``k + 1``.
    -1 (or ``None`` for the whole batch) means unknown.
    """

    steps: dict[str, torch.Tensor]
    agent_outputs: dict[str, torch.Tensor]
    initial_core_state: tuple[torch.Tensor, ...]
    lineage: torch.Tensor | None = None
    index: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.steps["reward"].shape[1]

    def _map(self, steps, states) -> "UnrollBatch":
        """A new batch: ``steps`` applied to every time-major tensor, ``states`` to every per-unroll tensor."""
        return UnrollBatch(
            steps={k: steps(v) for k, v in self.steps.items()},
            agent_outputs={k: steps(v) for k, v in self.agent_outputs.items()},
            initial_core_state=tuple(states(s) for s in self.initial_core_state),
            lineage=None if self.lineage is None else states(self.lineage),
            index=None if self.index is None else states(self.index),
        )

    def _continuity(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``lineage`` and ``index``, all -1 where the batch has none."""
        unknown = lambda: torch.full((len(self),), -1, dtype=torch.int64)  # noqa: E731
        return (unknown() if self.lineage is None else self.lineage,
                unknown() if self.index is None else self.index)

    def select(self, index) -> "UnrollBatch":
        """The unrolls at ``index`` (a slice or an index tensor) of the batch dimension."""
        return self._map(lambda t: t[:, index], lambda s: s[index])

    def to(self, device: torch.device) -> "UnrollBatch":
        move = lambda t: t.to(device, non_blocking=True)  # noqa: E731
        return self._map(move, move)

    def training_batch(self) -> dict:
        """The dict an agent's ``train_step`` takes: the step fields, ``agent_outputs``, ``initial_core_state``."""
        batch = dict(self.steps)
        batch["agent_outputs"] = dict(self.agent_outputs)
        batch["initial_core_state"] = self.initial_core_state
        return batch

    def unrolls(self) -> list[Unroll]:
        """One :class:`Unroll` of host arrays per unroll (for replay and inspection)."""
        host = self.to(torch.device("cpu"))
        steps = {k: v.numpy() for k, v in host.steps.items()}
        outputs = {k: v.numpy() for k, v in host.agent_outputs.items()}
        states = [s.numpy() for s in host.initial_core_state]
        lineage, index = (t.tolist() for t in host._continuity())
        return [
            Unroll(
                steps={k: v[:, i] for k, v in steps.items()},
                agent_outputs={k: v[:, i] for k, v in outputs.items()},
                initial_core_state=tuple(s[i] for s in states),
                lineage=lineage[i],
                index=index[i],
            )
            for i in range(len(self))
        ]

    @staticmethod
    def concat(batches: list["UnrollBatch"]) -> "UnrollBatch":
        if len(batches) == 1:
            return batches[0]
        first = batches[0]
        known = any(b.lineage is not None for b in batches)
        continuity = [b._continuity() for b in batches] if known else None
        return UnrollBatch(
            steps={k: torch.cat([b.steps[k] for b in batches], 1) for k in first.steps},
            agent_outputs={k: torch.cat([b.agent_outputs[k] for b in batches], 1) for k in first.agent_outputs},
            initial_core_state=tuple(
                torch.cat([b.initial_core_state[i] for b in batches]) for i in range(len(first.initial_core_state))
            ),
            lineage=torch.cat([c[0].to(first.steps["reward"].device) for c in continuity]) if known else None,
            index=torch.cat([c[1].to(first.steps["reward"].device) for c in continuity]) if known else None,
        )

    @staticmethod
    def from_unrolls(unrolls: list[Unroll], device: torch.device) -> "UnrollBatch":
        """Stacks single unrolls (e.g. sampled from a replay) time-major onto ``device``.

        An optional step field that an unroll lacks (``truncated``) is filled with zeros.
        """

        def time_major(arrays: list[np.ndarray]) -> torch.Tensor:
            return torch.from_numpy(np.stack(arrays, axis=1)).to(device, non_blocking=True)

        return UnrollBatch(
            steps={n: time_major([_step_field(u, n) for u in unrolls]) for n in TRAJECTORY_FIELDS},
            agent_outputs={k: time_major([u.agent_outputs[k] for u in unrolls]) for k in unrolls[0].agent_outputs},
            initial_core_state=tuple(
                torch.from_numpy(np.stack([u.initial_core_state[i] for u in unrolls])).to(device)
                for i in range(len(unrolls[0].initial_core_state))
            ),
            lineage=torch.tensor([u.lineage for u in unrolls], dtype=torch.int64, device=device),
            index=torch.tensor([u.index for u in unrolls], dtype=torch.int64, device=device),
        )
