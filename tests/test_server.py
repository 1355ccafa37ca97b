"""Tests for seed_rl.transport.grpc_server.LearnerServer with a real batcher and inference engine.

The agent is ``CountingAgent`` (see conftest): the action of an environment is
``int(observation[0]) * 1000 + steps since its episode started``, so a client
can check both that it got its own environments' actions and that the learner
kept each environment's recurrent state apart.
"""

from __future__ import annotations

import concurrent.futures
import re
import threading

import grpc
import numpy as np
import pytest

from conftest import FAKE_ENV, Client, start_learner, wait_for
from seed_rl.transport import protocol, wire
from seed_rl.core.unroll import UnrollShape

pytestmark = pytest.mark.timeout(60)


class ScriptedEnvs:
    """Produces deterministic steps for K environments of one stream and predicts the replies."""

    def __init__(self, stream: int, num_envs: int):
        self.stream = stream
        self.num_envs = num_envs
        self.counters = np.zeros(num_envs, dtype=np.int64)

    def observation_value(self, t: int, k: int) -> int:
        return self.stream * 100 + t * 2 + k  # unique per stream, step and env; exact in float32

    def request(self, t: int):
        k = np.arange(self.num_envs)
        observation = np.zeros((self.num_envs, 3), np.float32)
        observation[:, 0] = [self.observation_value(t, i) for i in k]
        observation[:, 1] = t
        observation[:, 2] = -1.5
        done = (t % (3 + k + self.stream % 3)) == 0
        reward = (t * 0.5 + k).astype(np.float32)
        return observation, reward, done

    def expected_actions(self, t: int, done: np.ndarray) -> np.ndarray:
        self.counters = np.where(done, 0, self.counters) + 1
        values = np.array([self.observation_value(t, k) for k in range(self.num_envs)], dtype=np.int64)
        return values * 1000 + self.counters


def run_script(client: Client, envs: ScriptedEnvs, steps: int, record: list | None = None) -> None:
    for t in range(steps):
        observation, reward, done = envs.request(t)
        actions = client.step(observation, reward, done)
        expected = envs.expected_actions(t, done)
        assert actions.dtype == np.int64
        np.testing.assert_array_equal(actions, expected, err_msg=f"stream {envs.stream} step {t}")
        if record is not None:
            record.append((observation, reward, done, actions))


def run_streams(address: str, num_streams: int, steps: int, num_envs: int = 2) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(num_streams)

    def stream(s: int) -> None:
        client = None
        try:
            client = Client(address, actor_id=f"stream-{s}")
            barrier.wait(timeout=20)
            run_script(client, ScriptedEnvs(s, num_envs), steps)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)
            barrier.abort()
        finally:
            if client is not None:
                client.close()

    threads = [threading.Thread(target=stream, args=(s,)) for s in range(num_streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    assert not any(t.is_alive() for t in threads), "a client stream hung"
    if errors:
        raise errors[0]


class GoodStream(threading.Thread):
    """A well-behaved actor stream running in the background, checking every reply."""

    def __init__(self, address: str, stream: int = 77, num_envs: int = 2):
        super().__init__(daemon=True)
        self.client = Client(address, actor_id="good")
        self.envs = ScriptedEnvs(stream, num_envs)
        self.steps = 0
        self.errors: list[BaseException] = []
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            t = 0
            while not self._halt.is_set():
                observation, reward, done = self.envs.request(t % 50)
                actions = self.client.step(observation, reward, done)
                np.testing.assert_array_equal(actions, self.envs.expected_actions(t % 50, done))
                self.steps += 1
                t += 1
        except BaseException as e:  # noqa: BLE001 - checked by the test
            self.errors.append(e)
        finally:
            self.client.close()

    def wait_steps(self, n: int) -> None:
        target = self.steps + n
        wait_for(lambda: self.steps >= target or bool(self.errors) or not self.is_alive(), what=f"{n} good steps")
        assert not self.errors, self.errors
        assert self.steps >= target

    def finish(self) -> None:
        self._halt.set()
        self.join(20)
        assert not self.is_alive()
        assert not self.errors, self.errors


def _request(observation=None, reward=None, done=None, k=2) -> bytes:
    return protocol.encode_request({
        "observation": np.zeros((k, 3), np.float32) if observation is None else observation,
        "reward": np.zeros(k, np.float32) if reward is None else reward,
        "done": np.ones(k, bool) if done is None else done,
    })


# ----------------------------------------------------------------------------
# Correct streams


def test_concurrent_streams_each_get_their_own_actions_in_order(learner):
    h = learner(batch_size=16, timeout_s=0.005)
    run_streams(h.address, num_streams=8, steps=30, num_envs=2)
    assert h.engine.env_steps == 8 * 30 * 2
    assert sum(h.batch_sizes) == 8 * 30 * 2
    assert max(h.batch_sizes) <= 16
    wait_for(lambda: h.engine.num_envs == 0 and h.server.streams.active == 0, what="streams to be freed")


def test_batches_form_as_configured(learner):
    num_streams, num_envs, steps = 4, 2, 10
    total = num_streams * num_envs
    # A full batch runs at once; the long timeout is never reached by lock-step streams.
    h = learner(batch_size=total, timeout_s=5.0)
    run_streams(h.address, num_streams=num_streams, steps=steps, num_envs=num_envs)
    assert h.batch_sizes == [total] * steps
    assert h.agent.act_batch_sizes == [total] * steps


def test_batch_size_one_serves_streams_separately(learner):
    h = learner(batch_size=1, timeout_s=5.0)
    run_streams(h.address, num_streams=3, steps=5, num_envs=2)
    # A request is never split: each one (2 environments) is a batch of its own.
    assert h.batch_sizes == [2] * 15


def test_stream_without_env_metadata_is_accepted(learner):
    h = learner()
    client = Client(h.address, env_name=None)
    try:
        run_script(client, ScriptedEnvs(1, 3), steps=3)
    finally:
        client.close()


def test_episode_statistics_reach_the_callback(learner):
    h = learner()
    client = Client(h.address)
    try:
        client.step(np.zeros((2, 3), np.float32), np.zeros(2, np.float32), np.ones(2, bool))
        client.step(
            np.zeros((2, 3), np.float32),
            np.array([1.0, 0.0], np.float32),
            np.array([True, False]),
            episode_return=np.array([21.5], np.float32),
            episode_length=np.array([17], np.int32),
        )
    finally:
        client.close()
    assert len(h.episodes) == 1
    returns, lengths = h.episodes[0]
    assert returns.tolist() == [21.5] and lengths.tolist() == [17]


# ----------------------------------------------------------------------------
# Bad input


def _garbage():
    return [b"this is not a seed_rl message"]


def _empty():
    return [b""]


def _wrong_shape():
    return [_request(observation=np.zeros((2, 4), np.float32))]


def _wrong_dtype():
    return [_request(observation=np.zeros((2, 3), np.float64))]


def _uint8_observation():
    return [_request(observation=np.zeros((2, 3), np.uint8))]


def _k_changes():
    return [_request(k=2), _request(k=2), _request(k=3)]


def _no_envs():
    return [_request(observation=np.zeros((0, 3), np.float32), reward=np.zeros(0), done=np.zeros(0), k=0)]


def _nan_reward():
    return [_request(), _request(reward=np.array([0.0, np.nan], np.float32))]


def _missing_done():
    return [wire.encode({"observation": np.zeros((2, 3), np.float32), "reward": np.zeros(2, np.float32)})]


def _reward_shape():
    return [
        wire.encode(
            {"observation": np.zeros((2, 3), np.float32), "reward": np.zeros(3, np.float32), "done": np.ones(2, bool)}
        )
    ]


def _done_dtype():
    return [
        wire.encode(
            {"observation": np.zeros((2, 3), np.float32), "reward": np.zeros(2, np.float32), "done": np.ones(2, np.uint8)}
        )
    ]


def _done_byte():
    done = np.array([1, 2], np.uint8).view(bool)  # the project's encoder sends the bytes as they are
    return [_request(), _request(done=done)]


def _episode_stats_mismatch():
    fields = wire.decode(_request())
    return [
        wire.encode(
            {**fields, "episode_return": np.zeros(2, np.float32), "episode_length": np.zeros(1, np.int32)}
        )
    ]


BAD_STREAMS = {
    "garbage": (_garbage, "bad magic"),
    "empty": (_empty, "truncated"),
    "wrong-shape": (_wrong_shape, r"observation shape \(4,\) does not match the learner's environment \(3,\)"),
    "wrong-dtype": (_wrong_dtype, "observation dtype float64 should be float32"),
    "uint8-observation": (_uint8_observation, "observation dtype uint8 should be float32"),
    "k-changes": (_k_changes, "stream started with 2 environments but this step has 3"),
    "no-envs": (_no_envs, "K >= 1"),
    "nan-reward": (_nan_reward, "reward contains NaN"),
    "missing-field": (_missing_done, "lacks the field 'done'"),
    "reward-shape": (_reward_shape, r"reward must be float32 \[2\]"),
    "done-dtype": (_done_dtype, r"done must be bool \[2\], got uint8"),
    "done-byte": (_done_byte, r"done must hold 0 or 1 \(a bool field\)"),  # as over shared memory
    "episode-stats": (_episode_stats_mismatch, "episode_return and episode_length"),
}


@pytest.mark.parametrize("case", list(BAD_STREAMS))
def test_bad_stream_is_refused_and_others_carry_on(learner, case):
    make_requests, message = BAD_STREAMS[case]
    h = learner(batch_size=64, timeout_s=0.002)
    good = GoodStream(h.address)
    good.start()
    try:
        good.wait_steps(5)
        bad = Client(h.address, actor_id="bad-actor")
        requests = make_requests()
        try:
            for data in requests[:-1]:  # valid steps before the bad one are answered
                assert bad.send(data).shape == (2,)
            with pytest.raises(grpc.RpcError) as info:
                bad.send(requests[-1])
        finally:
            bad.close()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        details = info.value.details()
        assert "bad-actor" in details
        assert re.search(message, details), details
        good.wait_steps(5)
        # Only the good stream's environments are left on the learner.
        wait_for(lambda: h.engine.num_envs == 2 and h.server.streams.active == 1, what="the bad stream to be freed")
    finally:
        good.finish()


def test_many_bad_streams_while_a_good_one_runs(learner):
    h = learner(batch_size=64, timeout_s=0.002)
    good = GoodStream(h.address)
    good.start()
    try:
        good.wait_steps(3)
        for round_ in range(3):
            for case, (make_requests, _) in BAD_STREAMS.items():
                bad = Client(h.address, actor_id=f"bad-{case}-{round_}")
                try:
                    with pytest.raises(grpc.RpcError) as info:
                        for data in make_requests():
                            bad.send(data)
                    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, case
                finally:
                    bad.close()
        good.wait_steps(5)
        wait_for(lambda: h.engine.num_envs == 2, what="bad streams to be freed")
    finally:
        good.finish()


def test_actor_for_another_env_is_refused(learner):
    h = learner(env_name=FAKE_ENV)
    good = GoodStream(h.address)
    good.start()
    try:
        good.wait_steps(3)
        wrong = Client(h.address, env_name="atari:Pong", actor_id="pong-actor")
        try:
            with pytest.raises(grpc.RpcError) as info:
                wrong.send(_request())
        finally:
            wrong.close()
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        details = info.value.details()
        assert "atari:Pong" in details and FAKE_ENV in details and "pong-actor" in details
        good.wait_steps(3)
        assert h.engine.num_envs == 2
    finally:
        good.finish()


# ----------------------------------------------------------------------------
# Stream lifetime


def test_ended_streams_free_their_environments(learner):
    h = learner()
    clients = {name: Client(h.address, actor_id=name) for name in ("clean", "crash", "hangup")}
    sizes = {"clean": 2, "crash": 3, "hangup": 1}
    try:
        for t in range(5):  # 5 steps with unroll length 4: every environment has a partial unroll
            for name, client in clients.items():
                client.step(np.zeros((sizes[name], 3), np.float32), np.zeros(sizes[name], np.float32), np.ones(sizes[name], bool))
        assert h.engine.num_envs == 6
        assert h.server.streams.active == 3
        assert len(h.engine._states) == 6  # internal: the recurrent-state table

        clients["clean"].close()  # the actor ends its stream
        wait_for(lambda: h.engine.num_envs == 4, what="the clean stream to be freed")
        clients["crash"].abort()  # the actor cancels the call
        wait_for(lambda: h.engine.num_envs == 1, what="the cancelled stream to be freed")
        clients["hangup"].channel.close()  # the connection just goes away
        wait_for(lambda: h.engine.num_envs == 0, what="the closed channel to be freed")
        wait_for(lambda: h.server.streams.active == 0, what="no active streams")
        assert len(h.engine._states) == 0
    finally:
        for client in clients.values():
            client.channel.close()


def test_reconnecting_streams_do_not_grow_learner_memory(learner):
    h = learner()
    capacity = h.engine._states.capacity  # internal: preallocated recurrent-state slots
    for cycle in range(30):
        client = Client(h.address, actor_id=f"cycle-{cycle}")
        try:
            run_script(client, ScriptedEnvs(cycle, 8), steps=3)
        finally:
            client.close()
        wait_for(lambda: h.engine.num_envs == 0, what=f"cycle {cycle} to be freed")
    assert h.engine._states.capacity == capacity
    assert len(h.engine._states) == 0


def test_stream_that_never_sends_is_harmless(learner):
    h = learner()
    client = Client(h.address)
    wait_for(lambda: h.server.streams.active == 1, what="the stream to start")
    client.close()
    wait_for(lambda: h.server.streams.active == 0, what="the stream to end")
    assert h.engine.num_envs == 0


# ----------------------------------------------------------------------------
# Unrolls


def test_unrolls_reach_the_sink_with_the_steps_sent(learner):
    length = 3
    h = learner(unroll=UnrollShape(length + 1))
    envs = ScriptedEnvs(stream=5, num_envs=2)
    record: list = []
    client = Client(h.address)
    try:
        run_script(client, envs, steps=2 * length + 2, record=record)  # 8 steps: unrolls 0..3 and 3..6 per env
    finally:
        client.close()
    wait_for(lambda: len(h.unrolls) == 4, what="4 unrolls")
    assert len(h.unrolls) == 4

    observations = np.stack([r[0] for r in record])  # [T, K, 3]
    rewards = np.stack([r[1] for r in record])
    dones = np.stack([r[2] for r in record])
    actions = np.stack([r[3] for r in record])
    counters = actions % 1000
    found = set()
    for unroll in h.unrolls:
        assert unroll.steps["observation"].shape == (length + 1, 3)
        first = int(unroll.steps["observation"][0, 0])
        k, start = first % 2, (first - 500) // 2  # observation_value = 5 * 100 + t * 2 + k
        found.add((k, start))
        steps = slice(start, start + length + 1)
        np.testing.assert_array_equal(unroll.steps["observation"], observations[steps, k])
        np.testing.assert_array_equal(unroll.steps["reward"], rewards[steps, k])
        np.testing.assert_array_equal(unroll.steps["done"], dones[steps, k])
        np.testing.assert_array_equal(unroll.steps["action"], actions[steps, k])
        np.testing.assert_array_equal(unroll.agent_outputs["counter"], counters[steps, k])
        # The state before the first step: zeros for a new environment, else the counter after start - 1.
        expected_state = 0 if start == 0 else counters[start - 1, k]
        assert unroll.initial_core_state[0].shape == ()
        assert int(unroll.initial_core_state[0]) == expected_state
    assert found == {(0, 0), (1, 0), (0, length), (1, length)}


def test_unrolls_of_concurrent_streams_are_not_mixed(learner):
    h = learner(batch_size=16, timeout_s=0.005, unroll=UnrollShape(6))
    run_streams(h.address, num_streams=4, steps=16, num_envs=2)
    assert len(h.unrolls) == 4 * 2 * 3  # steps 0..5, 5..10, 10..15 for each environment
    for unroll in h.unrolls:
        values = unroll.steps["observation"][:, 0].astype(np.int64)
        stream, rest = values // 100, values % 100
        assert len(set(stream.tolist())) == 1  # one stream
        assert len(set((rest % 2).tolist())) == 1  # one environment
        assert np.all(np.diff(rest // 2) == 1)  # consecutive steps
        assert unroll.steps["observation"][:, 1].tolist() == (rest // 2).tolist()


# ----------------------------------------------------------------------------
# Listening


def test_second_learner_on_the_same_port_is_refused(learner):
    # gRPC servers set SO_REUSEPORT by default: without turning it off, a second
    # learner would bind the same port and the kernel would split the actors
    # between the two learners.
    h = learner()
    try:
        second = start_learner(address=h.address)
    except (OSError, RuntimeError):
        pass
    else:
        second.stop()
        pytest.fail(f"a second learner could listen on {h.address}, where one is already listening")
    for s in range(4):
        client = Client(h.address)
        try:
            run_script(client, ScriptedEnvs(s, 2), steps=2)
        finally:
            client.close()
    assert h.engine.env_steps == 4 * 2 * 2


def test_port_in_use_error_names_the_address(learner):
    h = learner()
    with pytest.raises(OSError, match="is the port in use"):
        start_learner(address=h.address)


def test_server_address_has_the_bound_port(learner):
    h = learner()
    assert h.server.port > 0
    assert h.address == f"127.0.0.1:{h.server.port}"


def test_an_actor_id_of_any_length_is_served_beside_others(learner):
    """A 40-digit seed-actor-id once pushed environment indices past int64 and failed its whole batch."""
    h = learner(batch_size=2, timeout_s=0.5)
    observation = np.zeros((2, 3), np.float32)
    clients = [Client(h.address, actor_id="1" * 40), Client(h.address, actor_id="3")]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for step in range(3):
            replies = list(pool.map(lambda c: c.step(observation, np.zeros(2, np.float32), np.full(2, step == 0)),
                                    clients))
            assert all(r.shape == (2,) for r in replies)
    for client in clients:
        client.close()


def test_silent_streams_are_dropped_and_free_their_worker_threads(learner):
    """20 streams that open and never send once filled a 17-thread pool and locked reconnecting actors out."""
    h = learner(max_streams=4, first_request_timeout_s=0.5)
    silent = [Client(h.address, actor_id=f"silent{i}", timeout_s=30) for i in range(6)]
    wait_for(lambda: h.server.streams.active == 0, 20, what="the silent streams to be dropped")
    honest = Client(h.address, actor_id="1", timeout_s=10)
    assert honest.step(np.zeros((2, 3), np.float32), np.zeros(2, np.float32), np.ones(2, bool)).shape == (2,)
    honest.close()
    for client in silent:
        with pytest.raises(grpc.RpcError) as refused:
            client.send(protocol.encode_request({"observation": np.zeros((2, 3), np.float32),
                                                 "reward": np.zeros(2, np.float32), "done": np.ones(2, bool)}))
        assert refused.value.code() == grpc.StatusCode.CANCELLED
        client.channel.close()


def _one_step(client: Client) -> np.ndarray:
    return client.step(np.zeros((2, 3), np.float32), np.zeros(2, np.float32), np.ones(2, bool))


def test_a_newcomer_gets_in_while_silent_streams_hold_every_worker(learner):
    """Streams that open and never send once held the whole pool until their 30 s ran out, and an honest
    actor connecting meanwhile waited; now the stream that has been silent longest makes way for it."""
    h = learner(max_streams=4)  # silent streams are dropped after 30 s, far beyond this test
    silent = []
    for i in range(4):  # one at a time, so that the learner sees them in this order
        silent.append(Client(h.address, actor_id=f"silent{i}", timeout_s=40))
        wait_for(lambda: h.server.streams.active == len(silent), what=f"silent stream {i} to open")
    honest = Client(h.address, actor_id="1", timeout_s=20)
    assert _one_step(honest).shape == (2,)
    with pytest.raises(grpc.RpcError) as dropped:
        _one_step(silent[0])
    assert dropped.value.code() == grpc.StatusCode.CANCELLED
    for client in silent[1:]:  # the others kept their place, and are served when they speak
        assert _one_step(client).shape == (2,)
        client.close()
    # A flood of silent streams, more than the workers, takes the places of one another only.
    flood = [Client(h.address, actor_id=f"flood{i}", timeout_s=40) for i in range(12)]
    newcomer = Client(h.address, actor_id="2", timeout_s=20)
    assert _one_step(newcomer).shape == (2,)
    assert _one_step(honest).shape == (2,)
    for client in [honest, newcomer, silent[0], *flood]:
        client.close()
    wait_for(lambda: h.server.streams.active == 0, what="every stream to end")


def test_a_learner_whose_streams_all_step_tells_a_newcomer_to_retry(learner):
    from seed_rl.acting.grpc_link import learner_error
    from seed_rl.transport.errors import Unavailable

    h = learner(max_streams=2)
    stepping = [Client(h.address, actor_id=f"actor{i}", timeout_s=40) for i in range(2)]
    for client in stepping:
        assert _one_step(client).shape == (2,)
    late = Client(h.address, actor_id="late", timeout_s=20)
    with pytest.raises(grpc.RpcError) as refused:
        _one_step(late)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "serves its maximum of 2 streams" in refused.value.details()
    assert isinstance(learner_error(9, refused.value), Unavailable)  # the actor retries later
    late.close()
    stepping.pop().close()
    wait_for(lambda: h.server.streams.active == 1, what="a stream to leave")
    again = Client(h.address, actor_id="late", timeout_s=20)
    assert _one_step(again).shape == (2,)
    for client in (again, *stepping):
        client.close()


def test_tables_shrink_after_a_huge_stream_leaves_and_live_environments_keep_their_state(learner):
    """An actor with 300 environments grows the slot tables; when it leaves they shrink, mid-unroll for others."""
    length = 5
    h = learner(unroll=UnrollShape(length + 1))
    capacity = h.engine.slot_capacity
    envs, record = ScriptedEnvs(stream=5, num_envs=2), []
    honest = Client(h.address, actor_id="1")

    def honest_steps(steps: range) -> None:
        for t in steps:
            observation, reward, done = envs.request(t)
            actions = honest.step(observation, reward, done)
            np.testing.assert_array_equal(actions, envs.expected_actions(t, done), err_msg=f"step {t}")
            record.append((observation, reward, done, actions))

    honest_steps(range(0, 3))  # a partial unroll in flight
    huge = Client(h.address, actor_id="2")
    for _ in range(2):
        huge.step(np.zeros((300, 3), np.float32), np.zeros(300, np.float32), np.ones(300, bool))
    assert h.engine.slot_capacity >= 302
    huge.close()
    wait_for(lambda: h.engine.slot_capacity == capacity, what="the tables to shrink")
    assert h.engine.num_envs == 2
    honest_steps(range(3, 2 * length + 2))  # the recurrent states moved with their environments
    honest.close()
    wait_for(lambda: len(h.unrolls) == 4, what="the honest stream's 4 unrolls")
    observations = np.stack([r[0] for r in record])
    actions = np.stack([r[3] for r in record])
    for unroll in h.unrolls:  # the partial unrolls moved with them, row for row
        first = int(unroll.steps["observation"][0, 0])
        k, start = first % 2, (first - 500) // 2
        np.testing.assert_array_equal(unroll.steps["observation"], observations[start : start + length + 1, k])
        np.testing.assert_array_equal(unroll.steps["action"], actions[start : start + length + 1, k])
