"""The actor's gRPC link: one bidirectional stream per group of environments, over one channel.

gRPC status codes stay on the wire; :func:`learner_error` is where the actor
turns them into :class:`~seed_rl.transport.errors.Refused` or
:class:`~seed_rl.transport.errors.Unavailable`. A channel that does not connect
is asked why, so that a TLS mismatch ends the actor with a clear message
instead of endless retries.
"""

from __future__ import annotations

import contextlib
import queue

import grpc
import numpy as np

from seed_rl.acting.env_group import EnvGroup
from seed_rl.acting.settings import ActorSettings
from seed_rl.transport import protocol
from seed_rl.transport.errors import Refused, Unavailable
from seed_rl.transport.security import SecurityConfigError

# Statuses that retrying cannot fix: the actor is misconfigured.
FATAL_CODES = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNIMPLEMENTED,
)


def learner_error(actor_id: int, error: grpc.RpcError) -> Refused | Unavailable:
    """What a failed call means to the actor: a refusal (:data:`FATAL_CODES`), else retry later."""
    if error.code() in FATAL_CODES:
        return Refused.by_learner(actor_id, error.details())
    if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in (error.details() or ""):
        return Refused.by_learner(actor_id, (
            f"{error.details()}: the learner bounds a request by its --max_envs_per_stream (by default its "
            f"--envs_per_actor); start this actor with fewer environments or the learner with a larger "
            f"--max_envs_per_stream"
        ))
    return Unavailable(error.details() or error.code().name)


def channel_options(keepalive_s: float) -> list[tuple[str, int]]:
    """The actor's channel options: the protocol's message size limit and keepalive."""
    return [
        ("grpc.max_receive_message_length", protocol.MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", protocol.MAX_MESSAGE_BYTES),
        *protocol.keepalive_options(keepalive_s),
    ]


def _metadata(settings: ActorSettings, first_env: int | None = None) -> tuple[tuple[str, str], ...]:
    first = () if first_env is None else ((protocol.FIRST_ENV_KEY, str(first_env)),)
    return (
        (protocol.ACTOR_ID_KEY, str(settings.actor_id)),
        (protocol.ENV_KEY, settings.env_name),
        *first,
        *settings.security.metadata(),
    )


def _connect_error(settings: ActorSettings, channel: grpc.Channel) -> str:
    """Why ``channel`` does not connect, in gRPC's words ("" if it now does).

    Raises :class:`Refused` if the learner answers with a refusal.

    ``channel_ready_future`` only times out; a call that does not wait for the
    channel fails with the reason (refused connection, TLS handshake, ...).
    """
    call = channel.stream_stream(protocol.FULL_METHOD, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    try:
        for _ in call(iter(()), metadata=_metadata(settings), timeout=2.0, wait_for_ready=False):
            pass
    except grpc.RpcError as e:
        error = learner_error(settings.actor_id, e)
        if isinstance(error, Refused):
            raise error from None
        return str(error)
    return ""


def _tls_failure(settings: ActorSettings, reason: str) -> str | None:
    """A clear message when ``reason`` is a TLS failure retrying cannot fix, else None."""
    lowered = reason.lower()
    if "wrong_version_number" in lowered and settings.tls_ca_file:
        return (
            f"the learner at {settings.learner_address} does not speak TLS ({reason}); start it with "
            f"--tls_cert_file/--tls_key_file, or drop --tls_ca_file"
        )
    if "handshake failed" in lowered or "verification check failed" in lowered:
        return (
            f"TLS handshake with the learner at {settings.learner_address} failed ({reason}); check that "
            f"--tls_ca_file={settings.tls_ca_file} holds the CA (or self-signed certificate) the learner serves, "
            f"and set --tls_server_name when the address is not a name in that certificate"
        )
    return None


def _plaintext_hint(settings: ActorSettings, reason: str) -> str:
    """A hint for a plaintext actor whose connections a TLS learner closes."""
    if settings.tls_ca_file or "socket closed" not in reason.lower():
        return ""
    return "; if the learner serves TLS, give this actor --tls_ca_file"


class _GrpcLink:
    """One gRPC stream carrying one group's steps."""

    def __init__(self, settings: ActorSettings, channel: grpc.Channel, envs: EnvGroup):
        call = channel.stream_stream(
            protocol.FULL_METHOD, request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        self._outbox: queue.Queue = queue.Queue()
        self._responses = call(self._requests(), metadata=_metadata(settings, envs.first_env))
        self._envs = envs
        self._actor_id = settings.actor_id

    def _requests(self):
        while True:
            item = self._outbox.get()
            if item is None:
                return
            yield item

    def start(self) -> None:
        out = self._envs.reset_all()
        self._outbox.put(protocol.encode_request(out))

    def actions(self) -> np.ndarray:
        """The learner's answer to the last step; raises :func:`learner_error`'s verdict when the stream fails."""
        try:
            return protocol.decode_reply(next(self._responses))
        except StopIteration:
            raise Unavailable("the learner ended the stream") from None
        except grpc.RpcError as e:
            raise learner_error(self._actor_id, e) from None

    def step(self, actions: np.ndarray) -> None:
        out, returns, lengths = self._envs.step(actions)
        self._outbox.put(protocol.encode_request(out, returns, lengths))

    def close(self) -> None:
        self._outbox.put(None)
        self._responses.cancel()


class GrpcConnector:
    """Opens one channel to ``settings.learner_address`` and a stream per group on it (see ``acting.loop``)."""

    def __init__(self, settings: ActorSettings):
        self._settings = settings
        self._options = channel_options(settings.keepalive_s)
        self.where = settings.learner_address

    def connect(self, groups: list[EnvGroup], wait_s: float, opened: contextlib.ExitStack) -> list[_GrpcLink]:
        """Waits up to ``wait_s`` for the channel; raises :class:`Unavailable` (with gRPC's reason) if it does
        not connect, :class:`Refused` if the learner refuses this actor or its TLS settings cannot work."""
        settings = self._settings
        try:
            channel = settings.security.channel(settings.learner_address, self._options)
        except SecurityConfigError as e:
            raise Refused(str(e)) from None
        opened.enter_context(channel)
        try:
            grpc.channel_ready_future(channel).result(timeout=wait_s)
        except grpc.FutureTimeoutError:
            reason = _connect_error(settings, channel)
            fatal = _tls_failure(settings, reason)
            if fatal:
                raise Refused(fatal) from None
            raise Unavailable(reason + _plaintext_hint(settings, reason)) from None
        links = []
        for envs in groups:
            links.append(_GrpcLink(settings, channel, envs))
            opened.callback(links[-1].close)
        return links
