"""Learner-side inference over a batch of actor steps, and trajectory assembly.

One call handles a batch of :class:`StepRequest` (one per actor stream): it
looks up each environment's recurrent state, runs the agent once on the whole
batch, stores the new states, appends every environment's step to its unroll
and hands finished unrolls to ``unroll_sink``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from seed_rl.core.agent import ActInputs, Agent
from seed_rl.core.env_state import EnvStateTable, StepRecord, Unroll, UnrollBuilder


@dataclass
class StepRequest:
    """One step of all environments of one actor stream."""

    stream_id: int
    first_env_index: int  # global index of this actor's first environment
    observation: np.ndarray  # [K, ...]
    reward: np.ndarray  # [K] float32, result of the previous action
    done: np.ndarray  # [K] bool, observation starts a new episode
    truncated: np.ndarray  # [K] bool, the episode that ended hit a time limit

    @property
    def num_envs(self) -> int:
        return len(self.reward)


class InferenceEngine:
    def __init__(
        self,
        agent: Agent,
        unroll_length: int,
        unroll_sink: Callable[[Unroll], None],
        params_lock: threading.Lock,
        unroll_overlap: int = 1,
    ):
        self.agent = agent
        self.unroll_length = unroll_length
        self.unroll_overlap = unroll_overlap
        self._sink = unroll_sink
        self._params_lock = params_lock
        self._lock = threading.Lock()  # guards the state table and the builders
        self._states = EnvStateTable(agent.initial_core_state, agent.device)
        self._builders: dict[tuple[int, int], UnrollBuilder] = {}
        self.env_steps = 0

    @property
    def num_envs(self) -> int:
        with self._lock:
            return len(self._builders)

    def __call__(self, requests: Sequence[StepRequest]) -> list[np.ndarray]:
        keys = [(r.stream_id, i) for r in requests for i in range(r.num_envs)]
        observation = np.concatenate([r.observation for r in requests])
        done = np.concatenate([r.done for r in requests])
        truncated = np.concatenate([r.truncated for r in requests])
        reward = np.concatenate([r.reward for r in requests])
        env_index = np.concatenate(
            [np.arange(r.first_env_index, r.first_env_index + r.num_envs, dtype=np.int64) for r in requests]
        )
        device = self.agent.device
        with self._lock:
            state, index = self._states.gather(keys)
            with self._params_lock:
                inputs = ActInputs(
                    *(torch.from_numpy(x).to(device) for x in (observation, reward, done, env_index))
                )
                result = self.agent.act(inputs, state)
            self._states.scatter(index, result.core_state)
            actions = result.action.cpu().numpy()
            outputs = {k: v.cpu().numpy() for k, v in result.outputs.items()}
            state_before = tuple(s.cpu().numpy() for s in state)
            finished: list[Unroll] = []
            for i, key in enumerate(keys):
                builder = self._builders.get(key)
                if builder is None:
                    builder = self._builders[key] = UnrollBuilder(self.unroll_length, self.unroll_overlap)
                unroll = builder.append(
                    StepRecord(
                        observation=observation[i],
                        reward=float(reward[i]),
                        done=bool(done[i]),
                        truncated=bool(truncated[i]),
                        action=int(actions[i]),
                        agent_outputs={k: v[i] for k, v in outputs.items()},
                        core_state=tuple(s[i] for s in state_before),
                    )
                )
                if unroll is not None:
                    finished.append(unroll)
            self.env_steps += len(keys)
        for unroll in finished:
            self._sink(unroll)
        results, start = [], 0
        for r in requests:
            results.append(actions[start : start + r.num_envs])
            start += r.num_envs
        return results

    def remove_stream(self, stream_id: int, num_envs: int) -> None:
        """Drops the partial unrolls and recurrent states of a stream that ended."""
        keys = [(stream_id, i) for i in range(num_envs)]
        with self._lock:
            for key in keys:
                self._builders.pop(key, None)
            self._states.remove(keys)
