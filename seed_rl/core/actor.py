"""The actor loop: step K environments, stream their observations, apply the actions.

Actors hold no model. Each step they send the observations of all their
environments (with the reward and done flag of the last action) and wait for
the learner's actions. Finished episodes are reset here and reported to the
learner for logging. If the learner is unreachable, or goes away, the actor
says so once and retries with backoff; on reconnecting it resets its
environments, because the learner starts their trajectories afresh. Refusals
that retrying cannot fix (a wrong token, a certificate it does not trust, another
environment) end the actor with :class:`ActorConfigError`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import grpc
import numpy as np

from seed_rl.core import protocol, shm
from seed_rl.core.security import ClientSecurity, SecurityConfigError
from seed_rl.envs import EnvConfig, make_env

log = logging.getLogger(__name__)

# Statuses that retrying cannot fix: the actor is misconfigured.
FATAL_CODES = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNIMPLEMENTED,
)


TRANSPORTS = ("grpc", "shm")


class ActorConfigError(RuntimeError):
    """The learner refused this actor for a reason retrying cannot fix."""


@dataclass
class ActorSettings:
    learner_address: str
    env_name: str
    env_config: EnvConfig
    envs_per_actor: int
    actor_id: int = 0
    seed: int = 0
    max_backoff_s: float = 5.0
    tls_ca_file: str | None = None  # PEM the learner's certificate must chain to; None: plaintext
    tls_server_name: str | None = None  # name to check in the certificate instead of the address's host
    auth_token: str | None = field(default=None, repr=False)  # sent as `authorization: Bearer <token>`
    keepalive_s: float = protocol.KEEPALIVE_S
    transport: str = "grpc"  # "shm": shared memory with a learner on this machine (seed_rl.core.shm)

    @property
    def security(self) -> ClientSecurity:
        return ClientSecurity(self.tls_ca_file, self.tls_server_name, self.auth_token)


@dataclass
class StepArrays:
    """One step of K environments as the learner receives it; the shared-memory transport maps these."""

    observation: np.ndarray  # [K, ...]
    reward: np.ndarray  # [K] float32
    done: np.ndarray  # [K] bool: the observation starts an episode
    truncated: np.ndarray  # [K] bool: the episode that ended hit a time limit

    @classmethod
    def allocate(cls, num_envs: int, observation: np.ndarray) -> "StepArrays":
        observation = np.asarray(observation)
        return cls(
            np.empty((num_envs, *observation.shape), observation.dtype),
            np.zeros(num_envs, np.float32),
            np.zeros(num_envs, bool),
            np.zeros(num_envs, bool),
        )


class _EnvGroup:
    """K environments stepped in lock-step, with auto-reset and episode statistics.

    Each step is written into ``out`` (a :class:`StepArrays`): arrays of this
    process for gRPC, shared with the learner for the shared-memory transport.
    """

    def __init__(self, settings: ActorSettings):
        base_seed = settings.seed * 100_003 + settings.actor_id * 1_009
        self.seeds = [base_seed + i for i in range(settings.envs_per_actor)]
        self.envs = [make_env(settings.env_name, s, settings.env_config) for s in self.seeds]
        self.returns = np.zeros(settings.envs_per_actor, dtype=np.float64)
        self.lengths = np.zeros(settings.envs_per_actor, dtype=np.int64)
        self.resets = 0
        self.out: StepArrays | None = None  # allocated at the first reset unless a transport provides it

    def _write_observation(self, i: int, observation) -> None:
        if self.out is None:
            self.out = StepArrays.allocate(len(self.envs), observation)
        try:
            self.out.observation[i] = observation
        except ValueError:
            raise ActorConfigError(
                f"observation shape {np.shape(observation)} does not match the learner's environment "
                f"{self.out.observation.shape[1:]}; start the actor with the learner's --env and env flags"
            ) from None

    def reset_all(self) -> StepArrays:
        for i, env in enumerate(self.envs):
            observation, _ = env.reset(seed=self.seeds[i] + 7919 * self.resets)
            self._write_observation(i, observation)
        self.resets += 1
        self.returns[:] = 0
        self.lengths[:] = 0
        self.out.reward[:] = 0
        self.out.done[:] = True
        self.out.truncated[:] = False
        return self.out

    def step(self, actions: np.ndarray) -> tuple[StepArrays, np.ndarray, np.ndarray]:
        """Applies ``actions``; returns the step and the (returns, lengths) of episodes that ended."""
        if actions.shape != (len(self.envs),):
            raise ActorConfigError(f"learner sent {actions.shape} actions for {len(self.envs)} environments")
        out = self.out
        finished_returns, finished_lengths = [], []
        for i, env in enumerate(self.envs):
            observation, reward, terminated, truncated, _ = env.step(int(actions[i]))
            self.returns[i] += reward
            self.lengths[i] += 1
            done = terminated or truncated
            if done:
                finished_returns.append(self.returns[i])
                finished_lengths.append(self.lengths[i])
                self.returns[i] = 0
                self.lengths[i] = 0
                observation, _ = env.reset()
            self._write_observation(i, observation)
            out.reward[i] = reward
            out.done[i] = done
            out.truncated[i] = truncated and not terminated
        return out, np.asarray(finished_returns, np.float32), np.asarray(finished_lengths, np.int32)

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _encode_reset(envs: _EnvGroup) -> bytes:
    out = envs.reset_all()
    return protocol.encode_request(out.observation, out.reward, out.done)


def _encode_step(envs: _EnvGroup, actions: np.ndarray) -> bytes:
    out, returns, lengths = envs.step(actions)
    return protocol.encode_request(out.observation, out.reward, out.done, returns, lengths, out.truncated)


def _metadata(settings: ActorSettings) -> tuple[tuple[str, str], ...]:
    return (
        (protocol.ACTOR_ID_KEY, str(settings.actor_id)),
        (protocol.ENV_KEY, settings.env_name),
        *settings.security.metadata(),
    )


def _connect_error(settings: ActorSettings, channel: grpc.Channel) -> str:
    """Why ``channel`` does not connect, in gRPC's words ("" if it now does).

    Raises :class:`ActorConfigError` if the learner answers with a refusal.

    ``channel_ready_future`` only times out; a call that does not wait for the
    channel fails with the reason (refused connection, TLS handshake, ...).
    """
    call = channel.stream_stream(protocol.FULL_METHOD, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    try:
        for _ in call(iter(()), metadata=_metadata(settings), timeout=2.0, wait_for_ready=False):
            pass
    except grpc.RpcError as e:
        if e.code() in FATAL_CODES:
            raise ActorConfigError(f"learner refused actor {settings.actor_id}: {e.details()}") from None
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


def _stream(settings: ActorSettings, envs: _EnvGroup, channel: grpc.Channel, stop: threading.Event) -> None:
    """Runs one stream until it fails (raises ``grpc.RpcError``) or ``stop`` is set."""
    call = channel.stream_stream(
        protocol.FULL_METHOD, request_serializer=lambda b: b, response_deserializer=lambda b: b
    )
    outbox: queue.Queue = queue.Queue()

    def requests():
        while True:
            item = outbox.get()
            if item is None:
                return
            yield item

    responses = call(requests(), metadata=_metadata(settings))
    outbox.put(_encode_reset(envs))
    try:
        for reply in responses:
            if stop.is_set():
                break
            outbox.put(_encode_step(envs, protocol.decode_reply(reply)))
    finally:
        outbox.put(None)
        responses.cancel()


def _run_grpc(settings: ActorSettings, envs: _EnvGroup, stop: threading.Event) -> None:
    backoff = 0.25
    waiting_since: float | None = None
    options = [
        ("grpc.max_receive_message_length", protocol.MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", protocol.MAX_MESSAGE_BYTES),
        *protocol.keepalive_options(settings.keepalive_s),
    ]
    while not stop.is_set():
        try:
            channel = settings.security.channel(settings.learner_address, options)
        except SecurityConfigError as e:
            raise ActorConfigError(str(e)) from None
        with channel:
            try:
                grpc.channel_ready_future(channel).result(timeout=backoff)
            except grpc.FutureTimeoutError:
                reason = _connect_error(settings, channel)
                fatal = _tls_failure(settings, reason)
                if fatal:
                    raise ActorConfigError(fatal) from None
                if waiting_since is None:
                    waiting_since = time.monotonic()
                    hint = "" if settings.tls_ca_file or "socket closed" not in reason.lower() else (
                        "; if the learner serves TLS, give this actor --tls_ca_file"
                    )
                    log.warning(
                        "actor %d: learner at %s is not reachable yet (%s%s); retrying with backoff",
                        settings.actor_id,
                        settings.learner_address,
                        reason,
                        hint,
                    )
                backoff = min(backoff * 2, settings.max_backoff_s)
                continue
            if waiting_since is not None:
                log.info(
                    "actor %d: connected to %s after %.1f s",
                    settings.actor_id,
                    settings.learner_address,
                    time.monotonic() - waiting_since,
                )
                waiting_since = None
            backoff = 0.25
            try:
                _stream(settings, envs, channel, stop)
            except grpc.RpcError as e:
                if e.code() in FATAL_CODES:
                    raise ActorConfigError(f"learner refused actor {settings.actor_id}: {e.details()}") from None
                if not stop.is_set():
                    waiting_since = time.monotonic()
                    log.warning(
                        "actor %d: lost the learner (%s); reconnecting with backoff",
                        settings.actor_id,
                        e.code().name,
                    )


def _run_shm(settings: ActorSettings, envs: _EnvGroup, stop: threading.Event) -> None:
    path = shm.socket_path(shm.port_of(settings.learner_address))
    hello = {
        "actor_id": settings.actor_id,
        "env": settings.env_name,
        "num_envs": settings.envs_per_actor,
        "token": settings.auth_token,
    }
    backoff, waiting_since = 0.25, None
    no_stats = (np.zeros(0, np.float32), np.zeros(0, np.int32))
    while not stop.is_set():
        try:
            connection = shm.ShmConnection.connect(path, hello)
        except shm.Refused as e:
            raise ActorConfigError(f"learner refused actor {settings.actor_id}: {e}") from None
        except (OSError, shm.Unavailable) as e:
            if waiting_since is None:
                waiting_since = time.monotonic()
                log.warning(
                    "actor %d: no learner serves shared memory at %s yet (%s); retrying with backoff. "
                    "--transport=shm reaches a learner on this machine only; use --transport=grpc for another",
                    settings.actor_id, path, e,
                )
            stop.wait(backoff)
            backoff = min(backoff * 2, settings.max_backoff_s)
            continue
        if waiting_since is not None:
            log.info("actor %d: connected to %s after %.1f s", settings.actor_id, path, time.monotonic() - waiting_since)
            waiting_since = None
        backoff = 0.25
        try:
            envs.out = StepArrays(**connection.arrays)
            envs.reset_all()
            returns, lengths = no_stats
            while not stop.is_set():
                actions = connection.step(returns, lengths)
                _, returns, lengths = envs.step(actions)
        except shm.Refused as e:
            raise ActorConfigError(f"learner refused actor {settings.actor_id}: {e}") from None
        except (OSError, shm.Unavailable) as e:
            if not stop.is_set():
                waiting_since = time.monotonic()
                log.warning("actor %d: lost the learner (%s); reconnecting with backoff", settings.actor_id, e)
        finally:
            envs.out = None
            connection.close()


def run_actor(settings: ActorSettings, stop: threading.Event | None = None) -> None:
    """Runs until ``stop`` is set; survives learner restarts. Raises ActorConfigError if refused."""
    if settings.transport not in TRANSPORTS:
        raise ActorConfigError(f"unknown transport {settings.transport!r}; choose one of {', '.join(TRANSPORTS)}")
    if settings.transport == "shm" and not shm.available():
        raise ActorConfigError("--transport=shm needs Linux (memfd and SEQPACKET sockets); use --transport=grpc")
    stop = stop or threading.Event()
    envs = _EnvGroup(settings)
    try:
        (_run_shm if settings.transport == "shm" else _run_grpc)(settings, envs, stop)
    except shm.ShmError as e:
        raise ActorConfigError(str(e)) from None
    finally:
        envs.close()
