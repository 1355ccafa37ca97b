"""Tests for seed_rl.acting.loop.run_actor against a real learner (CartPole-v1, K=2), over gRPC and shared memory."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

from conftest import CountingAgent, LearnerHarness, start_learner, wait_for
from seed_rl.acting.loop import run_actor
from seed_rl.acting.settings import ActorSettings
from seed_rl.envs import EnvConfig, EnvSpec
from seed_rl.transport.errors import Refused
from seed_rl.core.unroll import UnrollShape

pytestmark = pytest.mark.timeout(120)

ENV = "CartPole-v1"
CARTPOLE = EnvSpec(observation_shape=(4,), observation_dtype="float32", num_actions=2)
POLL_S = 20.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ActorThread(threading.Thread):
    def __init__(self, settings: ActorSettings):
        super().__init__(daemon=True)
        self.settings = settings
        self.stop_event = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            run_actor(self.settings, self.stop_event)
        except BaseException as e:  # noqa: BLE001 - checked by the test
            self.error = e

    def stop(self) -> None:
        self.stop_event.set()
        self.join(POLL_S)
        assert not self.is_alive(), "run_actor did not return after stop was set"


def _settings(port: int, **kwargs) -> ActorSettings:
    values = dict(
        learner_address=f"127.0.0.1:{port}",
        env_name=ENV,
        env_config=EnvConfig(),
        envs_per_actor=2,
        actor_id=3,
        seed=1,
        max_backoff_s=0.5,
    )
    values.update(kwargs)
    return ActorSettings(**values)


@pytest.fixture(params=["grpc", "shm"])
def transport(request) -> str:
    return request.param


def _cartpole_learner(port: int, **kwargs) -> LearnerHarness:
    # Always pushing left ends CartPole episodes after about ten steps.
    kwargs.setdefault("agent", CountingAgent(fixed_action=0))
    return start_learner(
        address=f"127.0.0.1:{port}", spec=CARTPOLE, env_name=ENV, unroll=UnrollShape(6), serve_shm=True, **kwargs
    )


def _check_episodes(h: LearnerHarness) -> None:
    returns = np.concatenate([r for r, _ in h.episodes])
    lengths = np.concatenate([l for _, l in h.episodes])
    assert returns.dtype == np.float32 and lengths.dtype == np.int32
    assert np.all(lengths >= 1)
    np.testing.assert_array_equal(returns, lengths.astype(np.float32))  # CartPole pays 1 per step


def test_actor_waits_for_the_learner_then_reconnects_after_a_restart(transport):
    port = free_port()
    actor = ActorThread(_settings(port, transport=transport))
    actor.start()
    learners: list[LearnerHarness] = []
    try:
        time.sleep(1.0)  # no learner yet: the actor keeps retrying, it does not give up
        assert actor.is_alive() and actor.error is None

        first = _cartpole_learner(port)
        learners.append(first)
        wait_for(lambda: first.engine.env_steps >= 100 or not actor.is_alive(), POLL_S, what="steps on the first learner")
        assert actor.error is None, actor.error
        wait_for(lambda: len(first.episodes) >= 3, POLL_S, what="episode statistics")
        _check_episodes(first)
        assert first.server.streams.active == 1
        assert first.engine.num_envs == 2  # one stream of K=2 environments
        assert len(first.unrolls) > 0 and first.unrolls[0].steps["observation"].shape == (6, 4)

        first.stop()
        time.sleep(0.5)  # the actor notices and retries against a closed port
        assert actor.is_alive() and actor.error is None

        second = _cartpole_learner(port)
        learners.append(second)
        wait_for(lambda: second.engine.env_steps >= 100 or not actor.is_alive(), POLL_S, what="steps on the new learner")
        assert actor.error is None, actor.error
        wait_for(lambda: len(second.episodes) >= 1, POLL_S, what="episodes on the new learner")
        _check_episodes(second)
        assert second.engine.num_envs == 2

        actor.stop()
        assert actor.error is None, actor.error
        # Stopping the actor ends its stream, so the learner frees its environments.
        wait_for(lambda: second.engine.num_envs == 0 and second.server.streams.active == 0, POLL_S, what="stream end")
    finally:
        actor.stop_event.set()
        actor.join(POLL_S)
        for h in learners:
            h.stop()


def test_reconnected_actor_starts_fresh_episodes(transport):
    port = free_port()
    first = _cartpole_learner(port)
    actor = ActorThread(_settings(port, transport=transport))
    actor.start()
    second = None
    try:
        wait_for(lambda: first.engine.env_steps >= 20, POLL_S, what="steps")
        first.stop()
        second = _cartpole_learner(port)
        wait_for(lambda: len(second.unrolls) >= 2, POLL_S, what="unrolls on the new learner")
        # The first step a new learner sees from each environment starts an episode.
        for unroll in second.unrolls[:2]:
            assert unroll.steps["done"][0]
            assert unroll.steps["reward"][0] == 0.0
            assert int(unroll.initial_core_state[0]) == 0
    finally:
        actor.stop()
        first.stop()
        if second is not None:
            second.stop()
    assert actor.error is None, actor.error


def test_actor_stops_while_the_learner_is_unreachable(transport):
    actor = ActorThread(_settings(free_port(), transport=transport))
    actor.start()
    time.sleep(0.5)
    assert actor.is_alive()
    actor.stop()
    assert actor.error is None


def test_actor_for_another_env_is_refused_for_good(transport):
    port = free_port()
    h = start_learner(address=f"127.0.0.1:{port}", spec=CARTPOLE, env_name="Acrobot-v1", serve_shm=True)
    actor = ActorThread(_settings(port, transport=transport))
    actor.start()
    try:
        actor.join(POLL_S)
        assert not actor.is_alive(), "a refused actor should stop instead of retrying"
        assert isinstance(actor.error, Refused)
        assert "CartPole-v1" in str(actor.error) and "Acrobot-v1" in str(actor.error)
    finally:
        actor.stop_event.set()
        h.stop()


def test_actor_with_mismatched_observations_is_refused(transport):
    port = free_port()
    h = start_learner(
        address=f"127.0.0.1:{port}",
        spec=EnvSpec(observation_shape=(3,), observation_dtype="float32", num_actions=2),
        env_name=ENV,
        serve_shm=True,
    )
    actor = ActorThread(_settings(port, transport=transport))
    actor.start()
    try:
        actor.join(POLL_S)
        assert not actor.is_alive()
        assert isinstance(actor.error, Refused)
        assert "observation shape (4,)" in str(actor.error)
    finally:
        actor.stop_event.set()
        h.stop()


def test_a_double_buffered_actor_streams_two_halves_with_their_own_environment_indices(transport):
    port = free_port()
    h = _cartpole_learner(port)
    actor = ActorThread(_settings(port, transport=transport, envs_per_actor=5, double_buffer=True))
    actor.start()
    try:
        wait_for(lambda: h.engine.env_steps >= 200 or not actor.is_alive(), POLL_S, what="steps")
        assert actor.error is None, actor.error
        assert h.server.streams.active == 2 and h.engine.num_envs == 5  # halves of 2 and 3 environments
        assert h.server.streams.actors == 1  # two streams, one actor
        assert h.agent.env_indices == set(range(15, 20))  # actor 3 x 5 environments, numbered across both halves
        wait_for(lambda: len(h.episodes) >= 3, POLL_S, what="episode statistics")
        _check_episodes(h)
        actor.stop()
        wait_for(lambda: h.engine.num_envs == 0 and h.server.streams.active == 0, POLL_S, what="both streams end")
        assert h.server.streams.actors == 0
    finally:
        actor.stop_event.set()
        actor.join(POLL_S)
        h.stop()
    assert actor.error is None, actor.error


def test_a_claimed_first_environment_must_be_a_non_negative_integer(learner):
    import grpc

    from conftest import Client
    from seed_rl.transport import protocol

    h = learner()
    client = Client(h.address)
    # The test client sends no first-environment index; a raw call sends a bad one.
    call = client.channel.stream_stream(protocol.FULL_METHOD, request_serializer=lambda b: b,
                                        response_deserializer=lambda b: b)
    metadata = ((protocol.ACTOR_ID_KEY, "1"), (protocol.FIRST_ENV_KEY, "-4"))
    with pytest.raises(grpc.RpcError) as error:
        next(call(iter([b"x"]), metadata=metadata, timeout=10))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "first environment index" in error.value.details()
    client.close()
