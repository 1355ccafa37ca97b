"""The shared-memory transport (seed_rl.transport.shm, seed_rl.transport.shm_server): same semantics as gRPC."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from conftest import FAKE_ENV, FAKE_SPEC, Client, start_learner, wait_for
from seed_rl.acting.shm_link import ShmConnection
from seed_rl.core.unroll import TRAJECTORY_FIELDS, UnrollShape
from seed_rl.transport import shm, wire
from seed_rl.transport.errors import Refused, Unavailable

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not shm.available(), reason="the shared-memory transport needs Linux"),
]

K = 3


def _connect(h, actor_id=1, num_envs=K, env=FAKE_ENV, token=None) -> ShmConnection:
    hello = {"actor_id": actor_id, "env": env, "num_envs": num_envs, "token": token}
    return ShmConnection.connect(h.shm_server.path, hello)


def _write(conn: ShmConnection, observation, reward, done, truncated=None) -> None:
    conn.arrays["observation"][...] = observation
    conn.arrays["reward"][...] = reward
    conn.arrays["done"][...] = done
    conn.arrays["truncated"][...] = False if truncated is None else truncated


NO_STATS = (np.zeros(0, np.float32), np.zeros(0, np.int32))


@pytest.fixture
def shm_learner():
    made = []

    def make(**kwargs):
        h = start_learner(serve_shm=True, **kwargs)
        made.append(h)
        return h

    yield make
    for h in made:
        h.stop()


def _steps(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for t in range(n):
        yield (
            rng.standard_normal((K, *FAKE_SPEC.observation_shape)).astype(np.float32),
            rng.standard_normal(K).astype(np.float32),
            np.asarray([t == 0 or rng.random() < 0.2 for _ in range(K)]),
        )


def test_the_same_steps_make_the_same_unrolls_over_grpc_and_shared_memory(shm_learner):
    steps = list(_steps(13))
    results = {}
    for transport in ("grpc", "shm"):
        h = shm_learner(unroll=UnrollShape(5))
        actions = []
        if transport == "grpc":
            client = Client(h.address, actor_id="1")
            for observation, reward, done in steps:
                actions.append(client.step(observation, reward, done))
            client.close()
        else:
            conn = _connect(h)
            for observation, reward, done in steps:
                _write(conn, observation, reward, done)
                actions.append(conn.step(*NO_STATS).copy())
            conn.close()
        wait_for(lambda: h.engine.num_envs == 0, what="stream end")
        results[transport] = (actions, h.unrolls)
    (grpc_actions, grpc_unrolls), (shm_actions, shm_unrolls) = results["grpc"], results["shm"]
    np.testing.assert_array_equal(np.stack(grpc_actions), np.stack(shm_actions))
    assert len(grpc_unrolls) == len(shm_unrolls) == 3 * K  # 13 steps = 3 unrolls of 4 (+1 carried) per env
    for a, b in zip(grpc_unrolls, shm_unrolls):
        assert a.steps.keys() == b.steps.keys() == set(TRAJECTORY_FIELDS)
        for name in TRAJECTORY_FIELDS:
            np.testing.assert_array_equal(a.steps[name], b.steps[name])


def test_episode_statistics_reach_the_learner(shm_learner):
    h = shm_learner()
    conn = _connect(h)
    _write(conn, np.zeros((K, 3)), 0, True)
    conn.step(*NO_STATS)
    _write(conn, np.zeros((K, 3)), 1, [True, False, False])
    conn.step(np.asarray([21.0], np.float32), np.asarray([800], np.int32))
    conn.close()
    wait_for(lambda: h.episodes, what="episode statistics")
    returns, lengths = h.episodes[0]
    assert returns.tolist() == [21.0] and lengths.tolist() == [800]


@pytest.mark.parametrize(
    "corrupt, reason",
    [
        (lambda c: c.arrays["reward"].__setitem__(0, np.nan), "reward contains NaN"),
        (lambda c: c.arrays["truncated"].__setitem__(1, True), "truncated is set for an environment whose done"),
        (lambda c: c.arrays["done"].view(np.uint8).__setitem__(2, 7), r"done must hold 0 or 1 \(a bool field\)"),
    ],
)
def test_a_malformed_step_ends_only_its_own_connection(shm_learner, corrupt, reason):
    h = shm_learner()
    good, bad = _connect(h, actor_id=1), _connect(h, actor_id=2)
    for conn in (good, bad):
        _write(conn, np.zeros((K, 3)), 0, True)
        conn.step(*NO_STATS)
    _write(bad, np.zeros((K, 3)), 0, False)
    corrupt(bad)
    with pytest.raises(Refused, match=reason):
        bad.step(*NO_STATS)
    bad.close()
    for _ in range(5):  # the other actor carries on
        _write(good, np.zeros((K, 3)), 0, False)
        assert good.step(*NO_STATS).shape == (K,)
    wait_for(lambda: h.engine.num_envs == K, what="the refused actor's environments freed")
    good.close()


def test_what_the_actor_writes_after_sending_never_reaches_the_learner(shm_learner, monkeypatch):
    """Copy, then validate: a write into the shared memory just after the step's check changes nothing."""
    from seed_rl.transport import protocol

    h = shm_learner(unroll=UnrollShape(3))
    conn = _connect(h)
    checked = protocol.validate_request

    def validate_then_overwrite(fields, *args):
        result = checked(fields, *args)
        conn.arrays["reward"][...] = np.nan  # the actor rewrites its step after the learner's check
        conn.arrays["observation"][...] = np.inf
        return result

    monkeypatch.setattr(protocol, "validate_request", validate_then_overwrite)
    for t in range(4):
        _write(conn, np.full((K, 3), t, np.float32), t, t == 0)
        conn.step(*NO_STATS)
    conn.close()
    wait_for(lambda: h.unrolls, what="an unroll")
    for unroll in h.unrolls:
        assert np.all(np.isfinite(unroll.steps["reward"])) and np.all(np.isfinite(unroll.steps["observation"]))
        assert unroll.steps["reward"].tolist() == [0.0, 1.0, 2.0]


def _raw_connection(h) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.connect(h.shm_server.path)
    return sock


def test_malformed_messages_are_refused_with_the_reason(shm_learner):
    h = shm_learner()
    sock = _raw_connection(h)
    sock.sendall(b"S" + wire.encode({}))  # a step before any handshake
    assert shm.receive(sock).startswith(shm.REFUSED + b"the first message must be a handshake")
    sock.close()

    sock = _raw_connection(h)
    sock.sendall(shm.HELLO + b"{not json")
    assert shm.receive(sock).startswith(shm.REFUSED + b"malformed handshake")
    sock.close()

    conn = _connect(h)
    conn._sock.sendall(shm.STEP + b"garbage")
    assert shm.receive(conn._sock).startswith(shm.REFUSED)
    conn.close()

    conn = _connect(h)
    _write(conn, np.zeros((K, 3)), 0, True)
    conn._sock.sendall(shm.STEP + wire.encode({"observation": np.zeros((K, 3), np.float32)}))
    assert b"unexpected fields" in shm.receive(conn._sock)
    conn.close()
    wait_for(lambda: h.engine.num_envs == 0 and h.server.streams.active == 0, what="refused streams freed")


def _accepted_connections(h) -> int:
    """The learner's open server-side sockets on its path (an accepted socket shares its listener's address).

    Counting the process's descriptors instead failed once under the full suite: threads left by earlier
    tests open files of their own while this one waits.
    """
    path = h.shm_server.path
    with open("/proc/net/unix") as table:
        on_path = sum(1 for line in table if line.rstrip("\n").endswith(" " + path))
    return on_path - 1  # the listener


@pytest.mark.parametrize(
    "hello, reason",
    [
        (b'{"actor_id": 1, "env": "%s", "num_envs": 1e400}', b"num_envs must be an integer"),
        (b'{"actor_id": 1, "env": "%s", "num_envs": 2.5}', b"num_envs must be an integer"),
        (b"[" * 100_000 + b"]" * 100_000, b"malformed handshake: RecursionError"),
        (b'["actor_id", 1]', b"must be a JSON object"),
        (b'{"actor_id": 1, "env": "%s", "num_envs": 100000}', b"accepts 1 to 8 per stream (--max_envs_per_stream"),
        (b'{"actor_id": 1, "env": "%s", "num_envs": 0}', b"at least 1 environment (num_envs), got 0"),
    ],
)
def test_a_hostile_handshake_is_refused_and_leaks_no_descriptor(shm_learner, hello, reason):
    from seed_rl.transport.protocol import RequestLimits

    h = shm_learner(shm_kwargs={"limits": RequestLimits(max_envs_per_stream=8)})
    assert _accepted_connections(h) == 0
    for _ in range(3):
        sock = _raw_connection(h)
        sock.sendall(shm.HELLO + (hello % FAKE_ENV.encode() if b"%s" in hello else hello))
        answer = shm.receive(sock)
        assert answer.startswith(shm.REFUSED) and reason in answer, answer[:300]
        sock.close()
    wait_for(lambda: _accepted_connections(h) == 0, what="the refused connections' sockets closed")
    conn = _connect(h)  # an honest actor still gets in
    _write(conn, np.zeros((K, 3)), 0, True)
    assert conn.step(*NO_STATS).shape == (K,)
    conn.close()


def test_a_connection_that_never_handshakes_is_dropped(shm_learner):
    h = shm_learner(shm_kwargs={"handshake_timeout_s": 0.3})
    silent = [_raw_connection(h) for _ in range(5)]
    for sock in silent:
        assert shm.receive(sock) == b""  # the learner hung up
        sock.close()
    wait_for(lambda: _accepted_connections(h) == 0, what="the silent connections' sockets closed")


def _connect_when_accepted(h, timeout_s: float = 20.0) -> ShmConnection:
    """An actor's connection, retried while the listen backlog is full (connect() with a timeout does not wait)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return _connect(h)
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_silent_connections_hold_no_thread_each_and_an_honest_actor_gets_in(shm_learner):
    """1,000 connections that never shook hands once held 1,000 learner threads until their handshakes timed out."""
    h = shm_learner(shm_kwargs={"handshake_timeout_s": 60})  # none times out during the test
    threads = threading.active_count()
    silent = [_raw_connection(h) for _ in range(100)]
    conn = _connect_when_accepted(h)  # after every silent connection
    _write(conn, np.zeros((K, 3)), 0, True)
    assert conn.step(*NO_STATS).shape == (K,)
    # The honest actor's thread, and room for a thread of the harness; not one per silent connection.
    assert threading.active_count() <= threads + 3, [t.name for t in threading.enumerate()]
    conn.close()
    for sock in silent:
        sock.close()


def test_beyond_the_bound_on_waiting_handshakes_the_oldest_connection_goes_first(shm_learner):
    h = shm_learner(shm_kwargs={"handshake_timeout_s": 60, "max_waiting_handshakes": 4})
    silent = [_raw_connection(h) for _ in range(6)]
    conn = _connect(h)  # the seventh connection: three have to go
    _write(conn, np.zeros((K, 3)), 0, True)
    assert conn.step(*NO_STATS).shape == (K,)
    for sock in silent[:3]:
        sock.settimeout(10)
        assert shm.receive(sock) == b""  # the learner hung up
    for sock in silent[3:]:  # the newest still wait for their handshake
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            sock.recv(1)
    conn.close()
    for sock in silent:
        sock.close()


def test_handshake_checks_env_token_and_capacity(shm_learner):
    from seed_rl.transport.security import ServerSecurity

    h = shm_learner(security=ServerSecurity(auth_token="s3cret"))
    with pytest.raises(Refused, match="auth token"):
        _connect(h)
    with pytest.raises(Refused, match="auth token"):
        _connect(h, token="wrong")
    with pytest.raises(Refused, match="runs --env=Pong but the learner trains"):
        _connect(h, env="Pong", token="s3cret")
    with pytest.raises(Refused, match="num_envs"):
        _connect(h, num_envs=0, token="s3cret")
    conn = _connect(h, token="s3cret")
    _write(conn, np.zeros((K, 3)), 0, True)
    assert conn.step(*NO_STATS).shape == (K,)
    conn.close()


_KILLED_ACTOR = textwrap.dedent("""
    import sys, numpy as np
    from seed_rl.acting.shm_link import ShmConnection
    conn = ShmConnection.connect(sys.argv[1], {"actor_id": 5, "env": sys.argv[2], "num_envs": 4})
    conn.arrays["done"][...] = True
    conn.step(np.zeros(0, np.float32), np.zeros(0, np.int32))
    print("stepped", flush=True)
    sys.stdin.read()  # wait to be killed
""")


def test_a_killed_actor_process_frees_its_environments(shm_learner):
    h = shm_learner()
    process = subprocess.Popen([sys.executable, "-c", _KILLED_ACTOR, h.shm_server.path, FAKE_ENV],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "stepped"
        assert h.engine.num_envs == 4 and h.server.streams.active == 1
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        wait_for(lambda: h.engine.num_envs == 0 and h.server.streams.active == 0, what="the dead actor's slots")
    finally:
        process.kill()


def test_stopping_the_learner_disconnects_actors_and_removes_its_socket(shm_learner):
    h = shm_learner()
    conn = _connect(h)
    _write(conn, np.zeros((K, 3)), 0, True)
    conn.step(*NO_STATS)
    path = h.shm_server.path
    h.stop()
    assert not os.path.exists(path)
    with pytest.raises((ConnectionResetError, Unavailable, BrokenPipeError)):
        conn.step(*NO_STATS)
    conn.close()


def test_a_socket_left_by_a_killed_learner_is_replaced(shm_learner):
    h = shm_learner()
    path, port = h.shm_server.path, h.server.port
    h.stop()
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as stale:
        stale.bind(path)  # a dead learner's socket file: nobody listens
    second = shm_learner(address=f"127.0.0.1:{port}")
    conn = _connect(second)
    _write(conn, np.zeros((K, 3)), 0, True)
    assert conn.step(*NO_STATS).shape == (K,)
    conn.close()


def test_a_socket_directory_others_can_enter_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    private = tmp_path / f"seed_rl-{os.getuid()}"
    assert shm.socket_path(8686) == str(private / "learner-8686.sock")
    assert private.stat().st_mode & 0o777 == 0o700
    private.chmod(0o777)
    with pytest.raises(shm.ShmError, match="mode 0700"):
        shm.socket_path(8686)


def test_layout_round_trips_and_aligns_every_array():
    layout = shm.ArrayLayout.for_step(5, (4, 84, 84), "uint8")
    assert shm.ArrayLayout.from_json(layout.to_json()) == layout
    assert all(offset % 64 == 0 for *_, offset in layout.fields)
    fd, memory = shm.create_memory(layout, "test")
    os.close(fd)
    views = layout.views(memory)
    assert views["observation"].shape == (5, 4, 84, 84) and views["done"].dtype == bool
    views["reward"][:] = 1.5
    assert views["observation"].sum() == 0  # arrays do not overlap
    del views
    memory.close()


def _train_with_tmpdir(tmp_path, transport: str) -> subprocess.CompletedProcess:
    bad = tmp_path / f"seed_rl-{os.getuid()}"
    bad.mkdir(mode=0o777)
    bad.chmod(0o777)  # others may enter: no learner socket goes here
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-m", "seed_rl.train", "--env=CartPole-v1", f"--transport={transport}",
         "--total_environment_frames=2000", "--num_actors=1", f"--logdir={tmp_path / 'run'}"],
        env=env, capture_output=True, text=True, timeout=120,
    )


def test_transport_shm_where_it_cannot_work_is_one_error_line(tmp_path):
    result = _train_with_tmpdir(tmp_path, "shm")
    assert result.returncode == 3, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith("error: --transport=shm: ")
    assert "mode 0700" in result.stderr and "Traceback" not in result.stderr


def test_transport_auto_falls_back_to_grpc_where_shared_memory_cannot_work(tmp_path):
    result = _train_with_tmpdir(tmp_path, "auto")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "actors on this machine use gRPC" in result.stderr
    assert "connected over gRPC" in result.stderr


def test_where_shared_memory_cannot_work_actor_learner_and_launcher_say_so_alike(monkeypatch):
    from seed_rl.learner.serving import choose_transports
    from seed_rl.acting.loop import run_actor
    from seed_rl.acting.settings import ActorSettings
    from seed_rl.envs import EnvConfig
    from seed_rl.transport.shm_server import ShmLearnerServer

    monkeypatch.setattr(shm, "available", lambda: False)
    message = "the shared-memory transport needs Linux .*; use --transport=grpc"
    settings = ActorSettings("127.0.0.1:1", FAKE_ENV, EnvConfig(), K, transport="shm")
    with pytest.raises(Refused, match=message):
        run_actor(settings)
    with pytest.raises(shm.ShmError, match=message):
        ShmLearnerServer(1, FAKE_SPEC, streams=None)
    with pytest.raises(ValueError, match="--transport=shm: " + message):
        choose_transports("shm")
    assert choose_transports("auto") == (False, "grpc")


def test_idle_grpc_streams_do_not_lock_shared_memory_actors_out(shm_learner):
    h = shm_learner(max_streams=2, shm_kwargs={"max_streams": 2})
    idle = [Client(h.address, actor_id=f"idle{i}", timeout_s=30) for i in range(2)]
    wait_for(lambda: h.server.streams.active == 2, what="the gRPC streams to open")
    conn = _connect(h)  # once refused: "serves its maximum", counting the gRPC streams
    _write(conn, np.zeros((K, 3)), 0, True)
    assert conn.step(*NO_STATS).shape == (K,)
    conn.close()
    for client in idle:
        client.close()


def test_an_actor_that_shakes_hands_but_never_steps_is_dropped(shm_learner):
    h = shm_learner(shm_kwargs={"first_step_timeout_s": 0.3, "max_streams": 2})
    silent = [_connect(h, actor_id=i) for i in (1, 2)]  # the whole shared-memory limit
    wait_for(lambda: h.server.streams.active == 0, 10, what="the silent actors to be dropped")
    conn = _connect(h, actor_id=3)
    _write(conn, np.zeros((K, 3)), 0, True)
    assert conn.step(*NO_STATS).shape == (K,)
    conn.close()
    for s in silent:
        s.close()
