"""What happens to one actor's steps once a transport has received them.

Both learner endpoints (gRPC in :mod:`seed_rl.transport.grpc_server`, shared memory in
:mod:`seed_rl.transport.shm_server`) open an :class:`ActorStream` per connected
actor and hand it each validated step. The stream numbers itself, reports
finished episodes, queues the step on the dynamic batcher, waits for the
actions, and on close frees the environments' slots and partial unrolls.
Stream ids come from one process-wide counter, so streams of both transports
share the inference engine's state table without colliding.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
from typing import Callable, Protocol

import numpy as np

from seed_rl.core.batcher import DynamicBatcher
from seed_rl.core.eval_envs import NO_EVAL_ENVS, EvalEnvs
from seed_rl.core.step import STEP_FIELD_NAMES, StepRequest
from seed_rl.transport.protocol import ProtocolError

log = logging.getLogger(__name__)

EpisodeCallback = Callable[[np.ndarray, np.ndarray], None]
_STREAM_IDS = itertools.count()  # next() on itertools.count is atomic under the GIL


def parse_first_env(value) -> int | None:
    """An actor's claimed first environment index (metadata string or JSON number); None when absent.

    Raises ``ProtocolError`` for anything but a non-negative integer.
    """
    if value is None:
        return None
    text = str(value)
    if not (text.isascii() and text.isdigit()) or len(text) > 12:
        raise ProtocolError(f"the first environment index must be a non-negative integer, got {text[:40]!r}")
    return int(text)


def _actor_index(actor: str) -> int | None:
    """A launcher-numbered actor id (at most 12 digits, like ``seed-first-env``), else None.

    Other ids (a peer address, 40 digits) number their environments by stream id,
    so no id can push an environment index past int64.
    """
    text = str(actor)
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 12 else None


class StreamEngine(Protocol):
    def remove_stream(self, stream_id: int, num_envs: int) -> None: ...


class ActorStreams:
    """The learner side of every actor connection, whatever the transport."""

    def __init__(
        self,
        env_name: str,
        batcher: DynamicBatcher,
        engine: StreamEngine,
        on_episodes: EpisodeCallback | None = None,
        eval_envs: EvalEnvs = NO_EVAL_ENVS,
        on_eval_episodes: EpisodeCallback | None = None,
    ):
        self.env_name = env_name
        self.batcher = batcher
        self._engine = engine
        self.on_episodes = on_episodes
        # Episodes of evaluation environments (core/eval_envs.py) go to on_eval_episodes instead.
        self.eval_envs = eval_envs
        self.on_eval_episodes = on_eval_episodes
        self._open_streams: collections.Counter[str] = collections.Counter()  # actor id -> its open streams
        self._lock = threading.Lock()

    @property
    def active(self) -> int:
        """Open streams (a double-buffered actor holds two)."""
        with self._lock:
            return self._open_streams.total()

    @property
    def actors(self) -> int:
        """Actors with at least one open stream."""
        with self._lock:
            return len(self._open_streams)

    def env_mismatch(self, actor: str, env: str | None) -> str | None:
        """Why an actor that runs ``env`` is refused, or None."""
        if env is not None and env != self.env_name:
            return f"actor {actor} runs --env={env} but the learner trains --env={self.env_name}"
        return None

    def open(self, actor: str, transport: str, first_env: int | None = None) -> "ActorStream":
        """A stream for ``actor``; ``first_env``: the global index of its first environment (see
        :func:`parse_first_env`), else actor id x environments."""
        with self._lock:
            self._open_streams[actor] += 1
        stream = ActorStream(self, actor, next(_STREAM_IDS), first_env)
        log.info("actor %s connected over %s (stream %d)", actor, transport, stream.stream_id)
        return stream

    def _closed(self, stream: "ActorStream") -> None:
        if stream.num_envs is not None:
            self._engine.remove_stream(stream.stream_id, stream.num_envs)
        with self._lock:
            self._open_streams[stream.actor] -= 1
            if not self._open_streams[stream.actor]:
                del self._open_streams[stream.actor]
        log.info("actor %s disconnected (stream %d)", stream.actor, stream.stream_id)


class ActorStream:
    """One connected actor: its validated steps in, its actions out."""

    def __init__(self, streams: ActorStreams, actor: str, stream_id: int, first_env: int | None = None):
        self._streams = streams
        self.actor = actor
        self.stream_id = stream_id
        self.num_envs: int | None = None  # fixed by the first step
        self._given_first_env = first_env
        self._first_env_index = 0
        self._closed = False

    def step(self, fields: dict[str, np.ndarray]) -> np.ndarray:
        """Runs one validated step (see ``protocol.validate_request``) and returns its actions.

        Raises ``BatcherClosed`` when the learner is shutting down.
        """
        observation = fields["observation"]
        if self.num_envs is None:
            self.num_envs = observation.shape[0]
            # Actors numbered by their launcher get stable global environment indices (R2D2's per-env epsilon).
            if self._given_first_env is not None:
                self._first_env_index = self._given_first_env
            else:
                index = _actor_index(self.actor)
                self._first_env_index = (self.stream_id if index is None else index) * self.num_envs
        if "episode_return" in fields:
            self._report_episodes(fields["episode_return"], fields["episode_length"], fields["done"])
        request = StepRequest(self.stream_id, self._first_env_index, {name: fields[name] for name in STEP_FIELD_NAMES})
        return self._streams.batcher.submit(request, self.num_envs).result()

    def _report_episodes(self, returns: np.ndarray, lengths: np.ndarray, done: np.ndarray) -> None:
        """Hands finished episodes to the training or the evaluation callback.

        An actor reports its finished episodes in environment order, one per
        environment whose ``done`` is set (none at its first step), so the k-th
        episode belongs to the k-th such environment.
        """
        streams = self._streams
        evaluation = np.zeros(len(returns), bool)
        if streams.eval_envs.num_eval_envs:
            ended = np.flatnonzero(done)[: len(returns)] + self._first_env_index
            evaluation[: len(ended)] = streams.eval_envs.is_eval(ended)
        if streams.on_episodes is not None and not evaluation.all():
            streams.on_episodes(returns[~evaluation], lengths[~evaluation])
        if streams.on_eval_episodes is not None and evaluation.any():
            streams.on_eval_episodes(returns[evaluation], lengths[evaluation])

    def close(self) -> None:
        """Frees this actor's environments; safe to call twice."""
        if not self._closed:
            self._closed = True
            self._streams._closed(self)
