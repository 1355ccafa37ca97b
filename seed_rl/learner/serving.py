"""The learner's transport endpoints: gRPC on the learner address and, beside it, shared memory.

Built and stopped by what assembles a learner (``seed_rl.learner.build``), so
that the training loop (``loop.py``) knows only the :class:`ActorStreams` the
endpoints feed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from seed_rl.envs import EnvSpec
from seed_rl.transport import shm
from seed_rl.transport.protocol import RequestLimits
from seed_rl.transport.grpc_server import LearnerServer
from seed_rl.transport.security import ServerSecurity
from seed_rl.transport.shm_server import ShmLearnerServer
from seed_rl.transport.streams import ActorStreams

log = logging.getLogger(__name__)


@dataclass
class ServingSettings:
    address: str = "127.0.0.1:0"  # host:port to listen on (port 0: a free one)
    max_streams: int = 256
    security: ServerSecurity = field(default_factory=ServerSecurity)  # TLS and token; none on loopback by default
    serve_shm: bool = False  # also serve actors on this machine over shared memory (seed_rl.transport.shm)
    limits: RequestLimits = field(default_factory=RequestLimits)  # bounds on the values actors send


class Endpoints:
    """gRPC, and with ``serve_shm`` shared memory, serving ``streams``; bound at construction, served from :meth:`start`.

    Raises:
      OSError: the address is taken.
    """

    def __init__(self, settings: ServingSettings, spec: EnvSpec, streams: ActorStreams):
        self.grpc = LearnerServer(
            settings.address, spec, streams, max_streams=settings.max_streams, security=settings.security,
            limits=settings.limits,
        )
        self.shm: ShmLearnerServer | None = None
        if settings.serve_shm:
            try:
                self.shm = ShmLearnerServer(
                    self.grpc.port, spec, streams, settings.security.auth_token, settings.max_streams, settings.limits
                )
            except BaseException:
                self.grpc.stop(grace_s=0)
                raise

    @property
    def address(self) -> str:
        """host:port of the gRPC endpoint (the port chosen, where the address asked for port 0)."""
        return self.grpc.address

    def start(self) -> None:
        self.grpc.start()
        if self.shm is not None:
            self.shm.start()

    def stop(self) -> None:
        if self.shm is not None:
            self.shm.stop()
        self.grpc.stop(grace_s=0.5)


def choose_transports(transport: str) -> tuple[bool, str]:
    """(whether the learner serves shared memory, the transport of the actors it starts) for ``--transport``.

    ``auto`` falls back to gRPC, with a warning, where shared memory cannot be used; ``shm`` fails instead.
    """
    if transport == "grpc":
        return False, "grpc"
    try:
        shm.check_available()
        shm.socket_dir()
    except shm.ShmError as e:
        if transport == "shm":
            raise ValueError(f"--transport=shm: {e}") from None
        log.warning("actors on this machine use gRPC: %s", e)
        return False, "grpc"
    return True, "shm"
