"""Trajectories as the learner hands them to training: one environment's :class:`Unroll`, or many as an
:class:`UnrollBatch` of time-major tensors."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch


@dataclass
class Unroll:
    """``length + 1`` consecutive steps of one environment.

    Step ``t`` holds the observation seen at ``t``, the reward and done flag that
    arrived with it (the result of action ``t - 1``), the action chosen at ``t``
    and the agent outputs of that choice (e.g. behaviour logits). Consecutive
    unrolls share one step, so the last step bootstraps the next unroll's first.
    ``initial_core_state`` is the recurrent state before step 0.
    """

    observation: np.ndarray
    reward: np.ndarray
    done: np.ndarray
    action: np.ndarray
    agent_outputs: dict[str, np.ndarray]
    initial_core_state: tuple[np.ndarray, ...]
    # Where ``done`` ends an episode cut by a time limit (Pardo et al. 2018):
    # agents may bootstrap through it or leave it out rather than treat it as terminal.
    truncated: np.ndarray | None = None


STEP_FIELDS = ("observation", "reward", "done", "truncated", "action")


@dataclass
class UnrollBatch:
    """``F`` unrolls of ``T + 1`` steps, time-major: tensors ``[T + 1, F, ...]``.

    Step conventions are :class:`Unroll`'s.
    ``initial_core_state`` holds the recurrent state before step 0, ``[F, ...]``.
    """

    observation: torch.Tensor
    reward: torch.Tensor
    done: torch.Tensor
    truncated: torch.Tensor
    action: torch.Tensor
    agent_outputs: dict[str, torch.Tensor]
    initial_core_state: tuple[torch.Tensor, ...]

    def __len__(self) -> int:
        return self.reward.shape[1]

    def _map(self, steps, states) -> "UnrollBatch":
        """A new batch: ``steps`` applied to every time-major tensor, ``states`` to every initial state."""
        return UnrollBatch(
            *(steps(getattr(self, name)) for name in STEP_FIELDS),
            agent_outputs={k: steps(v) for k, v in self.agent_outputs.items()},
            initial_core_state=tuple(states(s) for s in self.initial_core_state),
        )

    def select(self, index) -> "UnrollBatch":
        """The unrolls at ``index`` (a slice or an index tensor) of the batch dimension."""
        return self._map(lambda t: t[:, index], lambda s: s[index])

    def to(self, device: torch.device) -> "UnrollBatch":
        move = lambda t: t.to(device, non_blocking=True)  # noqa: E731
        return self._map(move, move)

    def training_batch(self) -> dict:
        """The dict an agent's ``train_step`` takes."""
        batch = {name: getattr(self, name) for name in STEP_FIELDS}
        batch["agent_outputs"] = dict(self.agent_outputs)
        batch["initial_core_state"] = self.initial_core_state
        return batch

    def unrolls(self) -> list[Unroll]:
        """One :class:`Unroll` of host arrays per unroll (for replay and inspection)."""
        host = self.to(torch.device("cpu"))
        columns = {name: getattr(host, name).numpy() for name in STEP_FIELDS}
        outputs = {k: v.numpy() for k, v in host.agent_outputs.items()}
        states = [s.numpy() for s in host.initial_core_state]
        return [
            Unroll(
                observation=columns["observation"][:, i],
                reward=columns["reward"][:, i],
                done=columns["done"][:, i],
                action=columns["action"][:, i],
                agent_outputs={k: v[:, i] for k, v in outputs.items()},
                initial_core_state=tuple(s[i] for s in states),
                truncated=columns["truncated"][:, i],
            )
            for i in range(len(self))
        ]

    @staticmethod
    def concat(batches: list["UnrollBatch"]) -> "UnrollBatch":
        if len(batches) == 1:
            return batches[0]
        first = batches[0]
        return UnrollBatch(
            *(torch.cat([getattr(b, name) for b in batches], 1) for name in STEP_FIELDS),
            agent_outputs={k: torch.cat([b.agent_outputs[k] for b in batches], 1) for k in first.agent_outputs},
            initial_core_state=tuple(
                torch.cat([b.initial_core_state[i] for b in batches]) for i in range(len(first.initial_core_state))
            ),
        )

    @staticmethod
    def from_unrolls(unrolls: list[Unroll], device: torch.device) -> "UnrollBatch":
        """Stacks single unrolls (e.g. sampled from a replay) time-major onto ``device``."""

        def time_major(arrays: list[np.ndarray]) -> torch.Tensor:
            return torch.from_numpy(np.stack(arrays, axis=1)).to(device, non_blocking=True)

        return UnrollBatch(
            observation=time_major([u.observation for u in unrolls]),
            reward=time_major([u.reward for u in unrolls]),
            done=time_major([u.done for u in unrolls]),
            truncated=time_major(
                [u.truncated if u.truncated is not None else np.zeros_like(u.done) for u in unrolls]
            ),
            action=time_major([u.action for u in unrolls]),
            agent_outputs={k: time_major([u.agent_outputs[k] for u in unrolls]) for k in unrolls[0].agent_outputs},
            initial_core_state=tuple(
                torch.from_numpy(np.stack([u.initial_core_state[i] for u in unrolls])).to(device)
                for i in range(len(unrolls[0].initial_core_state))
            ),
        )


assert {f.name for f in fields(UnrollBatch)} == {f.name for f in fields(Unroll)}
