"""Serving actors: the inference stack behind their streams, and the transport endpoints in front of it.

:class:`InferenceService` is the one way to put an engine behind actor streams
(engine -> dynamic batcher -> streams): the learner serves its agent with it,
and the benchmarks and the tests' learner fixture serve theirs without training.
:class:`Endpoints` (gRPC on the learner address and, beside it, shared memory)
are built and stopped by what assembles a learner (``seed_rl.learner.build``),
so that the training loop (``loop.py``) knows only the streams they feed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from seed_rl.core.batcher import DynamicBatcher
from seed_rl.core.eval_envs import NO_EVAL_ENVS, EvalEnvs
from seed_rl.envs import EnvSpec
from seed_rl.transport import shm
from seed_rl.transport.protocol import RequestLimits
from seed_rl.transport.grpc_server import LearnerServer
from seed_rl.transport.security import ServerSecurity
from seed_rl.transport.shm_server import ShmLearnerServer
from seed_rl.transport.streams import ActorStreams, EpisodeCallback

log = logging.getLogger(__name__)


class InferenceService:
    """``engine`` behind actor streams: a dynamic batcher gathers their steps into the engine's batches.

    ``engine`` runs a batch of steps (``seed_rl.learner.inference.InferenceEngine``, or a benchmark's
    stand-in); finished episodes go to ``on_episodes``, an evaluation environment's to ``on_eval_episodes``.
    """

    def __init__(
        self,
        engine,
        env_name: str,
        max_batch_size: int,
        timeout_s: float,
        on_batch: Callable[[int], None] | None = None,
        on_episodes: EpisodeCallback | None = None,
        eval_envs: EvalEnvs = NO_EVAL_ENVS,
        on_eval_episodes: EpisodeCallback | None = None,
    ):
        self.engine = engine
        self.batcher = DynamicBatcher(engine, max_batch_size=max_batch_size, timeout_s=timeout_s, on_batch=on_batch)
        self.streams = ActorStreams(env_name, self.batcher, engine, on_episodes=on_episodes, eval_envs=eval_envs,
                                    on_eval_episodes=on_eval_episodes)

    def close(self) -> None:
        """Stops batching; stop the endpoints that feed :attr:`streams` first."""
        self.batcher.close()


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
