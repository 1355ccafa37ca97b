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
from dataclasses import dataclass

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

# A stream whose first step has not arrived this long after it opened is dropped: each open
# stream holds a learner thread, so silent ones must not keep them. Actors build and reset
# their environments before they connect, so an honest first step is prompt.
FIRST_REQUEST_TIMEOUT_S = 30.0


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


@dataclass(frozen=True)
class RequestLimits:
    """Bounds on the values of an actor's step, beyond its shapes and dtypes."""

    # Far above any real environment's per-step reward (Atari's largest single scores are
    # in the thousands), far below float32's 3.4e38, where returns and V-trace targets overflow.
    max_abs_reward: float = 1e7
    # Environments in one stream's step. seed_rl.train sets the run's --envs_per_actor
    # (or --max_envs_per_stream); 65536 is shared memory's own cap.
    max_envs_per_stream: int = 1 << 16

    def max_request_bytes(self, spec: EnvSpec) -> int:
        """The largest request a stream within these limits can send: larger ones are refused unread.

        Per environment: its observation, the other step fields and one finished
        episode's statistics, with room to spare; plus the framing's headers.
        """
        observation = int(np.prod(spec.observation_shape)) * np.dtype(spec.observation_dtype).itemsize
        return min(MAX_MESSAGE_BYTES, 2 * (observation + 64) * self.max_envs_per_stream + (1 << 16))

    def check_num_envs(self, num_envs: int) -> None:
        if num_envs < 1:
            raise ProtocolError(f"a stream needs at least 1 environment (num_envs), got {num_envs}")
        if num_envs > self.max_envs_per_stream:
            raise ProtocolError(
                f"a stream of {num_envs} environments; this learner accepts 1 to {self.max_envs_per_stream} per stream "
                f"(--max_envs_per_stream, by default --envs_per_actor): start the actor with fewer environments "
                f"or the learner with a larger --max_envs_per_stream"
            )


DEFAULT_LIMITS = RequestLimits()


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


def decode_request(
    data: bytes, spec: EnvSpec, expected_envs: int | None, limits: RequestLimits = DEFAULT_LIMITS
) -> dict[str, np.ndarray]:
    """Decodes and validates one actor request against the learner's environment spec."""
    try:
        fields = wire.decode(data)
    except wire.WireError as e:
        raise ProtocolError(str(e)) from None
    return validate_request(fields, spec, expected_envs, limits)


def validate_request(
    fields: dict[str, np.ndarray], spec: EnvSpec, expected_envs: int | None, limits: RequestLimits = DEFAULT_LIMITS
) -> dict[str, np.ndarray]:
    """Checks one step's arrays against STEP_FIELDS, the environment spec and ``limits``, whichever transport brought them.

    Fills in absent optional fields with zeros; raises :class:`ProtocolError`.
    """
    for field in STEP_FIELDS:
        if field.required and field.name not in fields:
            raise ProtocolError(f"request lacks the field {field.name!r}")
    observation = fields["observation"]
    if observation.ndim < 1 or observation.shape[0] == 0:
        raise ProtocolError(f"observation must be [K, ...] with K >= 1 environments, got shape {observation.shape}")
    num_envs = observation.shape[0]
    limits.check_num_envs(num_envs)
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
        # A bool array is a view of the bytes the actor sent: one rule for every transport, only 0 and 1.
        if dtype == "bool" and value.view(np.uint8).max() > 1:
            raise ProtocolError(f"{field.name} must hold 0 or 1 (a bool field), got a byte of {value.view(np.uint8).max()}")
    if observation.dtype.kind == "f" and not np.all(np.isfinite(observation)):
        raise ProtocolError("observation contains NaN or infinity; fix the environment (or a wrapper) that produced it")
    _check_rewards(fields["reward"], limits.max_abs_reward)
    if np.any(fields["truncated"] & ~fields["done"]):
        raise ProtocolError("truncated is set for an environment whose done flag is not")
    if "episode_return" in fields:
        _check_episodes(fields, limits.max_abs_reward)
    return fields


def _check_rewards(reward: np.ndarray, max_abs_reward: float) -> None:
    if not np.all(np.isfinite(reward)):
        raise ProtocolError("reward contains NaN or infinity")
    largest = float(np.max(np.abs(reward)))
    if largest > max_abs_reward:
        raise ProtocolError(
            f"reward {largest:.3g} exceeds --max_abs_reward={max_abs_reward:.3g}; scale the environment's rewards, "
            f"or raise --max_abs_reward on the learner if they are real"
        )


def _check_episodes(fields: dict[str, np.ndarray], max_abs_reward: float) -> None:
    """Episode statistics must be finite and consistent with the step that reports them."""
    returns, lengths = fields["episode_return"], fields.get("episode_length")
    if lengths is None or returns.ndim != 1 or lengths.shape != returns.shape:
        raise ProtocolError("episode_return and episode_length must be 1-D arrays of equal length")
    ended = int(np.count_nonzero(fields["done"]))
    if len(returns) > ended:
        raise ProtocolError(f"{len(returns)} episodes reported, but only {ended} environments' done flags are set")
    if not np.all(np.isfinite(returns)):
        raise ProtocolError("episode_return contains NaN or infinity")
    if np.any(lengths < 1):
        raise ProtocolError("episode_length must be at least 1")
    if np.any(np.abs(returns.astype(np.float64)) > max_abs_reward * lengths.astype(np.float64)):
        raise ProtocolError(f"an episode_return exceeds its length times --max_abs_reward={max_abs_reward:.3g}")


def encode_reply(action: np.ndarray) -> bytes:
    return wire.encode({"action": np.asarray(action, dtype=np.int64)})


def decode_reply(data: bytes) -> np.ndarray:
    return wire.decode(data)["action"]
