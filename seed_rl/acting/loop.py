"""The actor loop: step K environments, stream their observations, apply the actions.

Actors hold no model. Each step they send the observations of all their
environments (with the reward and done flag of the last action) and wait for
the learner's actions. Finished episodes are reset here and reported to the
learner for logging. If the learner is unreachable, or goes away, the actor
says so once and retries with backoff; on reconnecting it resets its
environments, because the learner starts their trajectories afresh. Refusals
that retrying cannot fix (a wrong token, a certificate it does not trust, another
environment) end the actor with :class:`~seed_rl.transport.errors.Refused`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import grpc
import numpy as np

from seed_rl.transport import protocol, shm
from seed_rl.transport.errors import Refused, Unavailable
from seed_rl.transport.security import ClientSecurity, SecurityConfigError
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
    transport: str = "grpc"  # "shm": shared memory with a learner on this machine (seed_rl.transport.shm)
    # Two streams of half the environments each: one half steps while the other waits for its actions
    # (Sample Factory's double-buffered sampling), so the round trip to the learner does not idle the CPU.
    double_buffer: bool = False

    def env_groups(self) -> list[range]:
        """The environment indices (within this actor) of each stream."""
        k = self.envs_per_actor
        if not self.double_buffer or k < 2:
            return [range(k)]
        return [range(k // 2), range(k // 2, k)]

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

    def __init__(self, settings: ActorSettings, indices: range):
        base_seed = settings.seed * 100_003 + settings.actor_id * 1_009
        self.first_env = settings.actor_id * settings.envs_per_actor + indices.start  # across all actors
        self.seeds = [base_seed + i for i in indices]
        self.envs = [make_env(settings.env_name, s, settings.env_config) for s in self.seeds]
        self.returns = np.zeros(len(indices), dtype=np.float64)
        self.lengths = np.zeros(len(indices), dtype=np.int64)
        self.resets = 0
        self.out: StepArrays | None = None  # allocated at the first reset unless a transport provides it

    def _write_observation(self, i: int, observation) -> None:
        if self.out is None:
            self.out = StepArrays.allocate(len(self.envs), observation)
        try:
            self.out.observation[i] = observation
        except ValueError:
            raise Refused(
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
            raise Refused(f"learner sent {actions.shape} actions for {len(self.envs)} environments")
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

    def __init__(self, settings: ActorSettings, channel: grpc.Channel, envs: _EnvGroup):
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


class _ShmLink:
    """One shared-memory connection carrying one group's steps."""

    def __init__(self, settings: ActorSettings, path: str, envs: _EnvGroup):
        hello = {
            "actor_id": settings.actor_id,
            "env": settings.env_name,
            "num_envs": len(envs.envs),
            "first_env": envs.first_env,
            "token": settings.auth_token,
        }
        self._connection = shm.ShmConnection.connect(path, hello)
        self._envs = envs

    def start(self) -> None:
        self._envs.out = StepArrays(**self._connection.arrays)
        self._envs.reset_all()
        self._connection.send(np.zeros(0, np.float32), np.zeros(0, np.int32))

    def actions(self) -> np.ndarray:
        return self._connection.receive()

    def step(self, actions: np.ndarray) -> None:
        _, returns, lengths = self._envs.step(actions)
        self._connection.send(returns, lengths)

    def close(self) -> None:
        self._envs.out = None
        self._connection.close()


def _serve(links: list, stop: threading.Event) -> None:
    """Steps every group in turn: while one group's actions are computed, the next one steps."""
    for link in links:
        link.start()
    while not stop.is_set():
        for link in links:
            actions = link.actions()
            if stop.is_set():
                return
            link.step(actions)


def _run_grpc(settings: ActorSettings, groups: list[_EnvGroup], stop: threading.Event) -> None:
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
            raise Refused(str(e)) from None
        with channel:
            try:
                grpc.channel_ready_future(channel).result(timeout=backoff)
            except grpc.FutureTimeoutError:
                reason = _connect_error(settings, channel)
                fatal = _tls_failure(settings, reason)
                if fatal:
                    raise Refused(fatal) from None
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
            links = []
            try:
                links = [_GrpcLink(settings, channel, envs) for envs in groups]
                _serve(links, stop)
            except (grpc.RpcError, ConnectionResetError) as e:
                rpc_error = isinstance(e, grpc.RpcError)
                if rpc_error and e.code() in FATAL_CODES:
                    raise Refused.by_learner(settings.actor_id, e.details()) from None
                if not stop.is_set():
                    waiting_since = time.monotonic()
                    log.warning(
                        "actor %d: lost the learner (%s); reconnecting with backoff",
                        settings.actor_id,
                        e.code().name if rpc_error else e,
                    )
            finally:
                for link in links:
                    link.close()


def _run_shm(settings: ActorSettings, groups: list[_EnvGroup], stop: threading.Event) -> None:
    path = shm.socket_path(shm.port_of(settings.learner_address))
    backoff, waiting_since = 0.25, None
    while not stop.is_set():
        links: list[_ShmLink] = []
        try:
            for envs in groups:
                links.append(_ShmLink(settings, path, envs))
        except (OSError, Unavailable) as e:
            for link in links:
                link.close()
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
            _serve(links, stop)
        except (OSError, Unavailable) as e:
            if not stop.is_set():
                waiting_since = time.monotonic()
                log.warning("actor %d: lost the learner (%s); reconnecting with backoff", settings.actor_id, e)
        finally:
            for link in links:
                link.close()


def run_actor(settings: ActorSettings, stop: threading.Event | None = None) -> None:
    """Runs until ``stop`` is set; survives learner restarts. Raises Refused if refused."""
    if settings.transport not in TRANSPORTS:
        raise Refused(f"unknown transport {settings.transport!r}; choose one of {', '.join(TRANSPORTS)}")
    stop = stop or threading.Event()
    groups: list[_EnvGroup] = []
    try:
        if settings.transport == "shm":
            shm.check_available()
        for indices in settings.env_groups():
            groups.append(_EnvGroup(settings, indices))
        (_run_shm if settings.transport == "shm" else _run_grpc)(settings, groups, stop)
    except shm.ShmError as e:
        raise Refused(str(e)) from None
    finally:
        for envs in groups:
            envs.close()
