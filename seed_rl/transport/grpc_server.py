"""The learner's gRPC endpoint: one bidirectional stream per actor.

Each request is validated (see :mod:`seed_rl.transport.protocol`), handed to the
actor's :class:`~seed_rl.transport.streams.ActorStream`, and answered with the
actions once its inference batch has run. A bad
request ends only its own stream with ``INVALID_ARGUMENT``; the other streams
and the learner carry on. Streams that have sent nothing make way for newcomers
(:mod:`seed_rl.transport.stream_slots`). With a :class:`~seed_rl.transport.security.ServerSecurity`
the port speaks TLS and calls without the shared token are refused before this
module sees them.
"""

from __future__ import annotations

import logging
from concurrent import futures

import grpc

from seed_rl.transport import protocol
from seed_rl.core.batcher import BatcherClosed
from seed_rl.transport.refusal_log import RefusalLog
from seed_rl.transport.security import ServerSecurity
from seed_rl.transport.stream_slots import StreamSlots
from seed_rl.transport.streams import ActorStreams, parse_first_env
from seed_rl.envs import EnvSpec

log = logging.getLogger(__name__)


def _identity(data: bytes) -> bytes:
    return data


def _requests(request_iterator, actor: str, max_bytes: int, refusals: RefusalLog):
    """The stream's requests; one warning line where gRPC ends the stream itself.

    gRPC refuses a request above ``max_bytes`` unread (the actor gets
    RESOURCE_EXHAUSTED) and cancels a stream whose actor went away; either way
    the iterator raises a bare RpcError that does not say which.
    """
    try:
        yield from request_iterator
    except grpc.RpcError:
        refusals.warn(actor, f"stream ended abnormally: the actor cancelled it, or sent a request above the run's "
                             f"bound of {max_bytes} bytes")
        raise


class LearnerServer:
    def __init__(
        self,
        address: str,
        spec: EnvSpec,
        streams: ActorStreams,
        max_streams: int = 256,
        security: ServerSecurity | None = None,
        keepalive_s: float = protocol.KEEPALIVE_S,
        limits: protocol.RequestLimits = protocol.DEFAULT_LIMITS,
        first_request_timeout_s: float = protocol.FIRST_REQUEST_TIMEOUT_S,
    ):
        self.spec = spec
        self.limits = limits
        self._max_request_bytes = limits.max_request_bytes(spec)
        self.refusals = RefusalLog(log)
        self.slots = StreamSlots(max_streams, first_request_timeout_s,
                                 lambda actor, reason: self.refusals.warn(actor, f"dropped: {reason}"))
        self.streams = streams
        options = [
            # Bounded by the run's shape, so a stream cannot make the learner buffer a message of 256 MB.
            ("grpc.max_receive_message_length", self._max_request_bytes),
            ("grpc.max_send_message_length", protocol.MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),  # else a second learner can bind the same port and take actors
            *protocol.keepalive_options(keepalive_s),
        ]
        security = security or ServerSecurity()
        self.security = security
        # Every stream holds a worker thread for its lifetime, hence one per actor (and a spare: stream_slots.py).
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self.slots.workers), options=options,
            interceptors=security.interceptors(),
        )
        handler = grpc.method_handlers_generic_handler(
            protocol.SERVICE,
            {
                protocol.METHOD: grpc.stream_stream_rpc_method_handler(
                    self._act, request_deserializer=_identity, response_serializer=_identity
                )
            },
        )
        self._server.add_generic_rpc_handlers((handler,))
        credentials = security.server_credentials()
        try:
            if credentials is None:
                self.port = self._server.add_insecure_port(address)
            else:
                self.port = self._server.add_secure_port(address, credentials)
        except RuntimeError:  # grpcio >= 1.5x raises instead of returning 0
            self.port = 0
        if self.port == 0:
            raise OSError(f"could not listen on {address}: is the port in use?")
        self.address = f"{address.rsplit(':', 1)[0]}:{self.port}"

    def start(self) -> None:
        self.slots.start()
        self._server.start()
        log.info(
            "learner listening on %s (%s, %s)",
            self.address,
            "TLS" if self.security.tls else "plaintext",
            "token required" if self.security.auth_token else "no token",
        )

    def stop(self, grace_s: float = 1.0) -> None:
        self._server.stop(grace_s).wait()
        self.slots.stop()

    def _act(self, request_iterator, context: grpc.ServicerContext):
        metadata = dict(context.invocation_metadata())
        actor = metadata.get(protocol.ACTOR_ID_KEY, context.peer())
        refusal = self.streams.env_mismatch(actor, metadata.get(protocol.ENV_KEY))
        if refusal:
            self.refusals.warn(actor, f"refused: {refusal}")
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, refusal)
        try:
            first_env = parse_first_env(metadata.get(protocol.FIRST_ENV_KEY))
        except protocol.ProtocolError as e:
            self.refusals.warn(actor, f"refused: {e}")
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad request from actor {actor}: {e}")
        slot = self.slots.admit(actor, context.cancel)
        if slot is None:
            full = f"the learner serves its maximum of {self.slots.max_streams} streams, all of them stepping"
            self.refusals.warn(actor, f"refused: {full}")
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{full}; try again later")
        stream = self.streams.open(actor, "gRPC", first_env)
        try:
            silent = True
            for data in _requests(request_iterator, actor, self._max_request_bytes, self.refusals):
                if silent:
                    self.slots.spoke(slot)
                    silent = False
                try:
                    fields = protocol.decode_request(data, self.spec, stream.num_envs, self.limits)
                except protocol.ProtocolError as e:
                    self.refusals.warn(actor, f"refused: {e}")
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad request from actor {actor}: {e}")
                try:
                    actions = stream.step(fields)
                except BatcherClosed:
                    context.abort(grpc.StatusCode.UNAVAILABLE, "the learner is shutting down")
                yield protocol.encode_reply(actions)
        finally:
            self.slots.release(slot)
            stream.close()
