"""seed_rl.launch.vertex_task running for real on this machine, with CLUSTER_SPEC pointing at 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seed_rl.launch.credentials import generate_credentials
from process_helpers import pid_alive
from train_helpers import ROOT, read_metrics


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cluster_spec(task_type: str, index: int, port: int, actors: int = 1) -> str:
    return json.dumps({
        "cluster": {"workerpool0": [f"127.0.0.1:{port}"], "workerpool1": [f"127.0.0.1:{port + 1}"] * actors},
        "environment": "cloud",
        "task": {"type": task_type, "index": index, "trial": ""},
    })


def _start_task(cluster_spec: str, *args: str, log_path: Path) -> subprocess.Popen:
    env = dict(os.environ, CLUSTER_SPEC=cluster_spec)
    with open(log_path, "w") as log:
        return subprocess.Popen([sys.executable, "-m", "seed_rl.launch.vertex_task", *args], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)


def _wait_for(path: Path, pattern: str, count: int = 1, timeout: float = 60) -> list[re.Match]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        matches = list(re.finditer(pattern, path.read_text()))
        if len(matches) >= count:
            return matches
        time.sleep(0.2)
    raise AssertionError(f"{pattern!r} x{count} not in {path}:\n{path.read_text()[-3000:]}")


def _stop(process: subprocess.Popen) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def test_actor_replica_restarts_a_killed_actor_process_and_stops_on_sigterm(tmp_path):
    """No learner is listening: actors keep retrying, which is all this test needs."""
    log = tmp_path / "actor.log"
    task = _start_task(_cluster_spec("workerpool1", 0, _free_port()), "--insecure", "--actors_per_replica=2",
                       "--", "--env=CartPole-v1", "--envs_per_actor=2", "--agent=impala", log_path=log)
    try:
        first = _wait_for(log, r"actor process (\d) started \(pid (\d+)\)", count=2)
        victim = int(first[0].group(2))
        os.kill(victim, signal.SIGKILL)
        _wait_for(log, r"actor process 0 was killed by signal 9; restarting it")
        restarted = _wait_for(log, r"actor process 0 started \(pid (\d+)\)", count=2)[1]
        assert int(restarted.group(1)) != victim
        children = [int(restarted.group(1)), int(first[1].group(2))]
    finally:
        code = _stop(task)
    assert code == 0, log.read_text()[-3000:]
    assert not any(pid_alive(pid) for pid in children)


@pytest.mark.slow
def test_learner_and_actor_replicas_train_over_tls_with_a_token(tmp_path):
    credentials_dir = tmp_path / "credentials"
    generate_credentials(credentials_dir)
    port = _free_port()
    train_flags = ["--", "--env=CartPole-v1", "--envs_per_actor=4", "--total_environment_frames=4000",
                   f"--logdir={tmp_path / 'train'}", "--log_interval_s=1"]
    common = [f"--credentials_dir={credentials_dir}", "--learner_bind_host=127.0.0.1"]
    learner = _start_task(_cluster_spec("workerpool0", 0, port), *common, *train_flags, log_path=tmp_path / "learner.log")
    actor = _start_task(_cluster_spec("workerpool1", 0, port), *common, *train_flags, log_path=tmp_path / "actor.log")
    try:
        learner_code = learner.wait(timeout=240)
    finally:
        _stop(actor)
        _stop(learner)
    assert learner_code == 0, (tmp_path / "learner.log").read_text()[-3000:]
    assert read_metrics(tmp_path / "train")[-1]["frames"] >= 4000
