"""Processes die and come back: actors killed mid-run, a learner killed and restarted,
actors that crash or freeze over and over.

The process tests run ``python -m seed_rl.train --role=learner`` and
``python -m seed_rl.actor`` as a user would, kill them with SIGKILL (no chance
to clean up) and read the learner's ``metrics.jsonl``, which records
``actors_connected`` and ``envs_connected`` every second.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import Client, wait_for
from seed_rl.learner import checkpoint, checkpoint_loading
from seed_rl.transport import protocol
from test_actor import _cartpole_learner, free_port
from test_server import GoodStream, ScriptedEnvs, run_script
from train_helpers import ROOT, read_metrics, train_command

pytestmark = pytest.mark.timeout(120)

ENVS_PER_ACTOR = 4
FAST = ("--env=CartPole-v1", f"--envs_per_actor={ENVS_PER_ACTOR}", "--unroll_length=10", "--batch_size=4")


class Run:
    """A learner with --role=learner on a fixed port and actor processes, all killable."""

    def __init__(self, logdir: Path, num_actors: int, *learner_flags: str):
        self.logdir = logdir
        self.port = free_port()
        self.num_actors = num_actors
        self.learner_flags = learner_flags
        self.learner: subprocess.Popen | None = None
        self.actors: dict[int, subprocess.Popen] = {}
        self.learner_logs: list[Path] = []

    def start_learner(self) -> None:
        log = self.logdir.parent / f"learner-{len(self.learner_logs)}.log"
        self.learner_logs.append(log)
        command = train_command(
            self.logdir, "--role=learner", f"--learner_address=127.0.0.1:{self.port}", f"--num_actors={self.num_actors}",
            "--total_environment_frames=100000000", *FAST, *self.learner_flags,
        )
        with open(log, "w") as out:
            self.learner = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=out, text=True)

    def start_actor(self, actor_id: int) -> None:
        command = [
            sys.executable, "-m", "seed_rl.actor", f"--learner_address=127.0.0.1:{self.port}", "--env=CartPole-v1",
            f"--envs_per_actor={ENVS_PER_ACTOR}", f"--actor_id={actor_id}",
            *(flag for flag in self.learner_flags if flag == "--double_buffer"),  # a shared flag: both sides take it
        ]
        self.actors[actor_id] = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def learner_log(self) -> str:
        return self.learner_logs[-1].read_text()

    def wait_metrics(self, predicate, what: str, since: int = 0, timeout_s: float = 45.0) -> dict:
        """The first summary after line ``since`` of metrics.jsonl that satisfies ``predicate``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.learner.poll() is None, f"the learner exited:\n{self.learner_log()[-3000:]}"
            for record in read_metrics(self.logdir)[since:]:
                if predicate(record):
                    return record
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what}; last summaries {read_metrics(self.logdir)[-3:]}")

    def close(self) -> None:
        for process in [*self.actors.values(), self.learner]:
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def run(tmp_path):
    made: list[Run] = []

    def make(num_actors: int, *learner_flags: str) -> Run:
        made.append(Run(tmp_path / "run", num_actors, *learner_flags))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_killed_actor_is_dropped_and_its_restart_rejoins(run):
    # Double-buffered actors hold two streams each: actors_connected must still count actors.
    r = run(2, "--double_buffer")
    r.start_learner()
    r.start_actor(0)
    r.start_actor(1)
    r.wait_metrics(
        lambda m: m["actors_connected"] == 2 and m["envs_connected"] == 2 * ENVS_PER_ACTOR and m["train_steps"] > 0,
        "both actors training",
    )

    r.actors[1].kill()  # SIGKILL: no goodbye, its environments' partial unrolls are left behind
    r.actors[1].wait()
    since = len(read_metrics(r.logdir))
    alone = r.wait_metrics(lambda m: m["actors_connected"] == 1, "the learner to drop the killed actor", since)
    assert alone["envs_connected"] == ENVS_PER_ACTOR  # its partial unrolls and states were freed
    r.wait_metrics(
        lambda m: m["frames"] > alone["frames"] and m["train_steps"] > alone["train_steps"],
        "training to go on with the other actor", since,
    )

    r.start_actor(1)
    back = r.wait_metrics(lambda m: m["actors_connected"] == 2, "the restarted actor to rejoin", since)
    r.wait_metrics(
        lambda m: m["envs_connected"] == 2 * ENVS_PER_ACTOR and m["frames"] > back["frames"],
        "frames to keep increasing with both actors", since,
    )
    r.learner.send_signal(signal.SIGTERM)
    assert r.learner.wait(timeout=60) == 0
    log = r.learner_log()
    assert "actor 1 disconnected" in log and "Traceback" not in log


def test_killed_learner_resumes_and_waiting_actors_reconnect(run):
    r = run(2, "--checkpoint_interval_s=1")
    r.start_learner()
    r.start_actor(0)
    r.start_actor(1)
    deadline = time.monotonic() + 45
    while checkpoint.latest_checkpoint(r.logdir) is None or not any(m["train_steps"] > 0 for m in read_metrics(r.logdir)):
        assert time.monotonic() < deadline, f"no checkpoint of a trained model:\n{r.learner_log()[-3000:]}"
        assert r.learner.poll() is None, r.learner_log()[-3000:]
        time.sleep(0.3)

    r.learner.kill()  # SIGKILL: no final checkpoint
    r.learner.wait()
    stored = checkpoint_loading.load_checkpoint(checkpoint.latest_checkpoint(r.logdir))["frames"]
    assert stored > 0
    time.sleep(1.0)
    assert all(a.poll() is None for a in r.actors.values()), "actors must keep retrying, not exit"
    actor_pids = {i: a.pid for i, a in r.actors.items()}
    since = len(read_metrics(r.logdir))

    r.start_learner()  # same logdir, same port; the actors are not touched
    first = r.wait_metrics(lambda m: True, "the restarted learner's first summary", since)
    assert first["frames"] >= stored
    assert f"at {stored} frames" in r.learner_log()
    reconnected = r.wait_metrics(lambda m: m["actors_connected"] == 2, "the actors to reconnect on their own", since)
    r.wait_metrics(lambda m: m["frames"] > max(reconnected["frames"], stored), "training to go on", since)
    assert {i: a.pid for i, a in r.actors.items()} == actor_pids and all(a.poll() is None for a in r.actors.values())
    r.learner.send_signal(signal.SIGTERM)
    assert r.learner.wait(timeout=60) == 0


def test_local_actors_exit_when_their_learner_is_killed(tmp_path):
    """--role=local: a SIGKILLed learner leaves no actor processes retrying forever."""
    process = subprocess.Popen(
        train_command(tmp_path, *FAST, "--num_actors=2", "--total_environment_frames=100000000"),
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    group = os.getpgid(process.pid)
    try:
        deadline = time.monotonic() + 60
        while not any(m["actors_connected"] == 2 for m in read_metrics(tmp_path)):
            assert time.monotonic() < deadline and process.poll() is None, "the local run did not start"
            time.sleep(0.3)
        process.kill()
        process.wait()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                return  # every actor is gone
            time.sleep(0.2)
        pytest.fail("actor processes outlived their SIGKILLed learner")
    finally:
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _actor_children(pid: int) -> list[int]:
    """Process ids of the spawned actor processes of learner ``pid``."""
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    found = []
    for child in children:
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        except FileNotFoundError:
            continue
        if b"spawn_main" in command:  # not multiprocessing's resource tracker
            found.append(child)
    return found


def test_killed_local_actor_is_restarted_and_rejoins(tmp_path):
    """--role=local: the learner notices its actor process died and starts a new one."""
    process = subprocess.Popen(
        train_command(tmp_path, *FAST, "--num_actors=2", "--total_environment_frames=100000000"),
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not any(m["envs_connected"] == 2 * ENVS_PER_ACTOR for m in read_metrics(tmp_path)):
            assert time.monotonic() < deadline and process.poll() is None, "the local run did not start"
            time.sleep(0.3)
        actors = _actor_children(process.pid)
        assert len(actors) == 2, actors
        os.kill(actors[1], signal.SIGKILL)
        since = len(read_metrics(tmp_path))
        deadline = time.monotonic() + 45
        seen_one = False
        while True:
            assert time.monotonic() < deadline and process.poll() is None, f"no rejoin; {read_metrics(tmp_path)[-3:]}"
            records = read_metrics(tmp_path)[since:]
            seen_one = seen_one or any(m["actors_connected"] == 1 for m in records)
            if seen_one and records and records[-1]["envs_connected"] == 2 * ENVS_PER_ACTOR:
                break
            time.sleep(0.3)
        new_actors = _actor_children(process.pid)
        assert len(new_actors) == 2 and actors[0] in new_actors and actors[1] not in new_actors
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0
        assert "was killed by signal 9; restarting it" in stderr and "Traceback" not in stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_many_crashing_streams_keep_learner_memory_bounded(learner):
    """Streams that vanish mid-request, over and over, while another actor keeps running."""
    h = learner(batch_size=1000, timeout_s=0.02)  # requests wait in the batcher: cancels land mid-request
    capacity = h.engine._states.capacity  # internal: preallocated recurrent-state slots
    good = GoodStream(h.address, num_envs=3)
    good.start()
    threads_before = threading.active_count()
    try:
        for cycle in range(60):
            num_envs = 1 + cycle % 8
            client = Client(h.address, actor_id=f"crash-{cycle}")
            envs = ScriptedEnvs(cycle % 50, num_envs)
            run_script(client, envs, steps=1 + cycle % 3)
            observation, reward, done = envs.request(5)
            client._outbox.put(protocol.encode_request({"observation": observation, "reward": reward, "done": done}))  # in flight when the actor dies
            client.abort()
        wait_for(lambda: h.engine.num_envs == 3 and h.server.streams.active == 1, what="crashed streams to be freed")
        good.wait_steps(5)
        assert len(h.engine._states) == 3
        assert h.engine._states.capacity == capacity
        assert threading.active_count() <= threads_before + 10  # pool threads are reused, not one per crash
    finally:
        good.finish()
    wait_for(lambda: h.engine.num_envs == 0 and len(h.engine._states) == 0, what="the good stream to be freed")


def test_frozen_actor_is_dropped_by_keepalive(tmp_path):
    """SIGSTOP: the actor's connection stays open but nothing answers; keepalive pings find out."""
    port = free_port()
    h = _cartpole_learner(port, keepalive_s=1.0)
    actor = subprocess.Popen(
        [sys.executable, "-m", "seed_rl.actor", f"--learner_address=127.0.0.1:{port}", "--env=CartPole-v1",
         "--envs_per_actor=2"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: h.engine.num_envs == 2, 60, what="the actor to connect")
        actor.send_signal(signal.SIGSTOP)
        wait_for(lambda: h.engine.num_envs == 0 and h.server.streams.active == 0, 20, what="the frozen actor to be dropped")
        steps = h.engine.env_steps
        actor.send_signal(signal.SIGCONT)  # it wakes up, finds its stream gone and reconnects
        wait_for(lambda: h.engine.num_envs == 2 and h.engine.env_steps > steps, 30, what="the actor to reconnect")
    finally:
        actor.kill()
        actor.wait()
        h.stop()
