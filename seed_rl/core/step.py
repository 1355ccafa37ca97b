"""One step of an actor's K environments: its fields, declared once.

Every layer derives from :data:`STEP_FIELDS`: the actor's arrays
(:func:`allocate_step`), the gRPC request and its validation
(``seed_rl.transport.protocol``), the shared-memory layout
(``seed_rl.transport.shm.ArrayLayout``), the inference request
(:class:`StepRequest`) and the learner's trajectories
(``seed_rl.core.unroll.TRAJECTORY_FIELDS``). Adding a field is one
declaration here plus the code that produces it (``seed_rl.acting.env_group``)
and the code that consumes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StepField:
    """One per-environment field of a step: every step carries ``[K, *shape]`` of it."""

    name: str
    dtype: str | None  # numpy dtype name; None: the environment's observation dtype
    per_observation: bool  # True: each environment's value has the observation's shape; False: a scalar
    required: bool  # False: an actor may leave it out and the learner fills in zeros
    doc: str

    def shape(self, num_envs: int, observation_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (num_envs, *observation_shape) if self.per_observation else (num_envs,)

    def dtype_for(self, observation_dtype: str) -> str:
        return self.dtype or observation_dtype

    def zeros(self, num_envs: int, observation_shape: tuple[int, ...], observation_dtype: str) -> np.ndarray:
        """This field for ``num_envs`` environments (or steps), all zero: what an absent optional field means."""
        return np.zeros(self.shape(num_envs, observation_shape), self.dtype_for(observation_dtype))


STEP_FIELDS: tuple[StepField, ...] = (
    StepField("observation", None, True, True, "what each environment shows now"),
    StepField("reward", "float32", False, True, "the reward of the previous action, finite"),
    StepField("done", "bool", False, True, "the observation starts an episode (the previous one ended)"),
    StepField(
        "truncated", "bool", False, False,
        "the episode that ``done`` ended was cut by a time limit, not terminated; implies ``done``",
    ),
    StepField(
        "life_lost", "bool", False, False,
        "a life was lost with this reward and the game goes on (Atari); an agent may end its episode there",
    ),
)
STEP_FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in STEP_FIELDS)


def allocate_step(num_envs: int, observation_shape: tuple[int, ...], observation_dtype: str) -> dict[str, np.ndarray]:
    """Zeroed arrays for one step of ``num_envs`` environments, one per field."""
    return {f.name: f.zeros(num_envs, observation_shape, observation_dtype) for f in STEP_FIELDS}


@dataclass
class StepRequest:
    """One validated step of all environments of one actor stream, on its way to inference."""

    stream_id: int
    first_env_index: int  # global index of this stream's first environment
    step: dict[str, np.ndarray]  # every field of STEP_FIELDS, [K, ...]

    @property
    def num_envs(self) -> int:
        return len(self.step["reward"])
