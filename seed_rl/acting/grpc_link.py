"""The actor's gRPC link: one bidirectional stream per group of environments, and why a channel fails."""

from __future__ import annotations

import queue

import grpc
import numpy as np

from seed_rl.acting.env_group import EnvGroup
from seed_rl.acting.settings import ActorSettings
from seed_rl.transport import protocol
from seed_rl.transport.errors import Refused

# Statuses that retrying cannot fix: the actor is misconfigured.
FATAL_CODES = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNIMPLEMENTED,
)


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
        if e.code() in FATAL_CODES:
            raise Refused.by_learner(settings.actor_id, e.details()) from None
        return e.details() or e.code().name
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


class _GrpcLink:
    """One gRPC stream carrying one group's steps."""

    def __init__(self, settings: ActorSettings, channel: grpc.Channel, envs: EnvGroup):
        call = channel.stream_stream(
            protocol.FULL_METHOD, request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        self._outbox: queue.Queue = queue.Queue()
        self._responses = call(self._requests(), metadata=_metadata(settings, envs.first_env))
        self._envs = envs

    def _requests(self):
        while True:
            item = self._outbox.get()
            if item is None:
                return
            yield item

    def start(self) -> None:
        out = self._envs.reset_all()
        self._outbox.put(protocol.encode_request(out.observation, out.reward, out.done))

    def actions(self) -> np.ndarray:
        """The learner's answer to the last step; raises ``grpc.RpcError`` when the stream fails."""
        try:
            return protocol.decode_reply(next(self._responses))
        except StopIteration:
            raise ConnectionResetError("the learner ended the stream") from None

    def step(self, actions: np.ndarray) -> None:
        out, returns, lengths = self._envs.step(actions)
        self._outbox.put(
            protocol.encode_request(out.observation, out.reward, out.done, returns, lengths, out.truncated)
        )

    def close(self) -> None:
        self._outbox.put(None)
        self._responses.cancel()
