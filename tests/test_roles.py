"""``--role=learner`` serves only the learner; actors started on their own join it."""

from __future__ import annotations

import socket
import subprocess
import sys

from train_helpers import ROOT, read_metrics, run_train, train_command


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_learner_role_trains_with_separately_started_actors(tmp_path):
    address = f"127.0.0.1:{_free_port()}"
    learner = subprocess.Popen(
        train_command(
            tmp_path, "--role=learner", f"--learner_address={address}", "--env=CartPole-v1",
            "--num_actors=2", "--envs_per_actor=4", "--total_environment_frames=6000",
        ),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    actors = [
        subprocess.Popen(
            [sys.executable, "-m", "seed_rl.actor", f"--learner_address={address}", "--env=CartPole-v1",
             "--envs_per_actor=4", f"--actor_id={i}"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for i in range(2)
    ]
    try:
        _, stderr = learner.communicate(timeout=240)
    finally:
        for actor in actors:
            actor.kill()
            actor.wait()
        if learner.poll() is None:
            learner.kill()
    assert learner.returncode == 0, stderr[-3000:]
    assert "2 remote actors" in stderr
    assert read_metrics(tmp_path)[-1]["frames"] >= 6000
    assert list((tmp_path / "checkpoints").glob("ckpt-*.pt"))


def test_learner_role_refuses_a_random_port(tmp_path):
    result = run_train(tmp_path, "--role=learner", "--learner_address=127.0.0.1:0", "--env=CartPole-v1", timeout=120)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "remote actors cannot find" in result.stderr.strip().splitlines()[-1]


def test_a_taken_port_is_one_clear_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_train(tmp_path, "--role=learner", f"--learner_address=127.0.0.1:{port}", "--env=CartPole-v1",
                           timeout=120)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: could not listen on 127.0.0.1:") and "--learner_address" in last, last
