"""What actors and the learner say to each other, and the checks on it.

One bidirectional stream per actor, method ``/seed_rl.Learner/Act``. Every
request is a :mod:`seed_rl.transport.wire` message holding one step of the
actor's K environments, a ``[K, ...]`` array per field of
:data:`seed_rl.core.step.STEP_FIELDS` (optional fields may be left out), and
optionally ``episode_return`` / ``episode_length`` ``[n]`` for the episodes
that ended with this step (logging only).

Every reply carries ``action`` ``[K]`` int64. Call metadata names the actor
(``seed-actor-id``) and the environment it runs (``seed-env``), so an actor
started for another game is refused before it sends anything.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from seed_rl.transport import wire
from seed_rl.core.step import STEP_FIELDS
from seed_rl.envs import EnvSpec

SERVICE = "seed_rl.Learner"
METHOD = "Act"
FULL_METHOD = f"/{SERVICE}/{METHOD}"
ACTOR_ID_KEY = "seed-actor-id"
ENV_KEY = "seed-env"
# Global index of the stream's first environment (optional; default actor id x environments). An actor
# that splits its environments over several streams (double buffering) numbers each stream's with it.
FIRST_ENV_KEY = "seed-first-env"
MAX_MESSAGE_BYTES = 256 * 1024 * 1024

# Both sides ping the connection this often and drop it when a ping goes
# unanswered for a third of that, so a peer whose machine or network vanished
# (no TCP reset) is noticed: the learner frees that actor's stream and
# environments, the actor starts reconnecting.
KEEPALIVE_S = 30.0


def keepalive_options(keepalive_s: float) -> list[tuple[str, int]]:
    """gRPC channel/server options for keepalive pings every ``keepalive_s`` seconds."""
    period_ms = int(keepalive_s * 1000)
    timeout_ms = max(period_ms // 3, 100)
    return [
        ("grpc.keepalive_time_ms", period_ms),
        ("grpc.keepalive_timeout_ms", timeout_ms),
        # A keepalive ping joins a ping already in flight (e.g. flow control's BDP
        # ping) and then waits as long as that one may: one minute by default.
        ("grpc.http2.ping_timeout_ms", timeout_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        # Accept the other side's pings at this rate instead of answering them with GOAWAY.
        ("grpc.http2.min_recv_ping_interval_without_data_ms", max(period_ms // 2, 100)),
        ("grpc.http2.max_pings_without_data", 0),
    ]


class ProtocolError(ValueError):
    """A request broke the protocol; the text names the field and what was expected."""


EPISODE_FIELDS = ("episode_return", "episode_length")  # per finished episode, beside the step's fields


def encode_request(
    step: Mapping[str, np.ndarray],
    episode_return: np.ndarray | None = None,
    episode_length: np.ndarray | None = None,
) -> bytes:
    """One step (a ``[K, ...]`` array per field of STEP_FIELDS; optional ones may be absent) as a request."""
    fields = {}
    for field in STEP_FIELDS:
        if field.name in step:
            value = np.asarray(step[field.name])
            fields[field.name] = value if field.dtype is None else value.astype(field.dtype, copy=False)
    if episode_return is not None and len(episode_return):
        fields["episode_return"] = np.asarray(episode_return, dtype=np.float32)
        fields["episode_length"] = np.asarray(episode_length, dtype=np.int32)
    return wire.encode(fields)


def decode_request(data: bytes, spec: EnvSpec, expected_envs: int | None) -> dict[str, np.ndarray]:
    """Decodes and validates one actor request against the learner's environment spec."""
    try:
        fields = wire.decode(data)
    except wire.WireError as e:
        raise ProtocolError(str(e)) from None
    return validate_request(fields, spec, expected_envs)


def validate_request(
    fields: dict[str, np.ndarray], spec: EnvSpec, expected_envs: int | None
) -> dict[str, np.ndarray]:
    """Checks one step's arrays against STEP_FIELDS and the environment spec, whichever transport brought them.

    Fills in absent optional fields with zeros; raises :class:`ProtocolError`.
    """
    for field in STEP_FIELDS:
        if field.required and field.name not in fields:
            raise ProtocolError(f"request lacks the field {field.name!r}")
    observation = fields["observation"]
    if observation.ndim < 1 or observation.shape[0] == 0:
        raise ProtocolError(f"observation must be [K, ...] with K >= 1 environments, got shape {observation.shape}")
    num_envs = observation.shape[0]
    if expected_envs is not None and num_envs != expected_envs:
        raise ProtocolError(f"stream started with {expected_envs} environments but this step has {num_envs}")
    if observation.shape[1:] != spec.observation_shape:
        raise ProtocolError(
            f"observation shape {observation.shape[1:]} does not match the learner's environment "
            f"{spec.observation_shape}; start the actor with the learner's --env and env flags"
        )
    if observation.dtype.name != spec.observation_dtype:
        raise ProtocolError(f"observation dtype {observation.dtype.name} should be {spec.observation_dtype}")
    for field in STEP_FIELDS:
        if field.per_observation:
            continue  # the observation is checked above, with hints of its own
        if field.name not in fields:
            fields[field.name] = field.zeros(num_envs, spec.observation_shape, spec.observation_dtype)
            continue
        shape, dtype = field.shape(num_envs, spec.observation_shape), field.dtype_for(spec.observation_dtype)
        value = fields[field.name]
        if value.shape != shape or value.dtype.name != dtype:
            raise ProtocolError(
                f"{field.name} must be {dtype} [{', '.join(map(str, shape))}], got {value.dtype.name} {value.shape}"
            )
    if not np.all(np.isfinite(fields["reward"])):
        raise ProtocolError("reward contains NaN or infinity")
    if np.any(fields["truncated"] & ~fields["done"]):
        raise ProtocolError("truncated is set for an environment whose done flag is not")
    if "episode_return" in fields:
        returns, lengths = fields["episode_return"], fields.get("episode_length")
        if lengths is None or returns.ndim != 1 or lengths.shape != returns.shape:
            raise ProtocolError("episode_return and episode_length must be 1-D arrays of equal length")
    return fields


def encode_reply(action: np.ndarray) -> bytes:
    return wire.encode({"action": np.asarray(action, dtype=np.int64)})


def decode_reply(data: bytes) -> np.ndarray:
    return wire.decode(data)["action"]
