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

from seed_rl.core import protocol
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

    @property
    def security(self) -> ClientSecurity:
        return ClientSecurity(self.tls_ca_file, self.tls_server_name, self.auth_token)


class _EnvGroup:
    """K environments stepped in lock-step, with auto-reset and episode statistics."""

    def __init__(self, settings: ActorSettings):
        base_seed = settings.seed * 100_003 + settings.actor_id * 1_009
        self.seeds = [base_seed + i for i in range(settings.envs_per_actor)]
        self.envs = [make_env(settings.env_name, s, settings.env_config) for s in self.seeds]
        self.returns = np.zeros(settings.envs_per_actor, dtype=np.float64)
        self.lengths = np.zeros(settings.envs_per_actor, dtype=np.int64)
        self.resets = 0

    def reset_all(self) -> bytes:
        observations = []
        for i, env in enumerate(self.envs):
            obs, _ = env.reset(seed=self.seeds[i] + 7919 * self.resets)
            observations.append(obs)
        self.resets += 1
        self.returns[:] = 0
        self.lengths[:] = 0
        k = len(self.envs)
        return protocol.encode_request(np.stack(observations), np.zeros(k, np.float32), np.ones(k, bool))

    def step(self, actions: np.ndarray) -> bytes:
        if actions.shape != (len(self.envs),):
            raise ActorConfigError(f"learner sent {actions.shape} actions for {len(self.envs)} environments")
        observations, rewards, dones, truncations = [], [], [], []
        finished_returns, finished_lengths = [], []
        for i, env in enumerate(self.envs):
            obs, reward, terminated, truncated, _ = env.step(int(actions[i]))
            self.returns[i] += reward
            self.lengths[i] += 1
            done = terminated or truncated
            if done:
                finished_returns.append(self.returns[i])
                finished_lengths.append(self.lengths[i])
                self.returns[i] = 0
                self.lengths[i] = 0
                obs, _ = env.reset()
            observations.append(obs)
            rewards.append(reward)
            dones.append(done)
            truncations.append(truncated and not terminated)
        return protocol.encode_request(
            np.stack(observations),
            np.asarray(rewards, np.float32),
            np.asarray(dones, bool),
            np.asarray(finished_returns, np.float32),
            np.asarray(finished_lengths, np.int32),
            np.asarray(truncations, bool),
        )

    def close(self) -> None:
        for env in self.envs:
            env.close()


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
    outbox.put(envs.reset_all())
    try:
        for reply in responses:
            if stop.is_set():
                break
            outbox.put(envs.step(protocol.decode_reply(reply)))
    finally:
        outbox.put(None)
        responses.cancel()


def run_actor(settings: ActorSettings, stop: threading.Event | None = None) -> None:
    """Runs until ``stop`` is set; survives learner restarts. Raises ActorConfigError if refused."""
    stop = stop or threading.Event()
    envs = _EnvGroup(settings)
    backoff = 0.25
    waiting_since: float | None = None
    options = [
        ("grpc.max_receive_message_length", protocol.MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", protocol.MAX_MESSAGE_BYTES),
        *protocol.keepalive_options(settings.keepalive_s),
    ]
    try:
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
    finally:
        envs.close()
