"""The actor loop: step K environments, stream their observations, apply the actions.

Actors hold no model. Each step they send the observations of all their
environments (with the reward and done flag of the last action) and wait for
the learner's actions. Finished episodes are reset here and reported to the
learner for logging. If the learner is unreachable, or goes away, the actor
says so once and retries with backoff; on reconnecting it resets its
environments, because the learner starts their trajectories afresh.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass

import grpc
import numpy as np

from seed_rl.core import protocol
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
    num_envs: int
    actor_id: int = 0
    seed: int = 0
    max_backoff_s: float = 5.0


class _EnvGroup:
    """K environments stepped in lock-step, with auto-reset and episode statistics."""

    def __init__(self, settings: ActorSettings):
        base_seed = settings.seed * 100_003 + settings.actor_id * 1_009
        self.seeds = [base_seed + i for i in range(settings.num_envs)]
        self.envs = [make_env(settings.env_name, s, settings.env_config) for s in self.seeds]
        self.returns = np.zeros(settings.num_envs, dtype=np.float64)
        self.lengths = np.zeros(settings.num_envs, dtype=np.int64)
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

    metadata = ((protocol.ACTOR_ID_KEY, str(settings.actor_id)), (protocol.ENV_KEY, settings.env_name))
    responses = call(requests(), metadata=metadata)
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
    ]
    try:
        while not stop.is_set():
            with grpc.insecure_channel(settings.learner_address, options=options) as channel:
                try:
                    grpc.channel_ready_future(channel).result(timeout=backoff)
                except grpc.FutureTimeoutError:
                    if waiting_since is None:
                        waiting_since = time.monotonic()
                        log.warning(
                            "actor %d: learner at %s is not reachable yet; retrying with backoff",
                            settings.actor_id,
                            settings.learner_address,
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
