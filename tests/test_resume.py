"""Checkpoints are atomic and a re-run resumes at the stored frame count."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
import torch

from seed_rl.learner import checkpoint
from train_helpers import ROOT, read_metrics, run_train, train_command

FAST = ("--env=CartPole-v1", "--num_actors=1", "--envs_per_actor=4", "--unroll_length=10", "--batch_size=4")


def _stored_frames(logdir) -> int:
    return checkpoint.load_checkpoint(checkpoint.latest_checkpoint(logdir))["frames"]


def test_rerun_resumes_from_checkpoint_frame_count(tmp_path):
    first = run_train(tmp_path, *FAST, "--total_environment_frames=3000", timeout=180)
    assert first.returncode == 0, first.stderr[-3000:]
    stored = _stored_frames(tmp_path)
    assert stored >= 3000
    model_before = checkpoint.load_checkpoint(checkpoint.latest_checkpoint(tmp_path))["agent"]["model"]

    second = run_train(tmp_path, *FAST, "--total_environment_frames=6000", timeout=180)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"at {stored} frames" in second.stderr
    metrics = read_metrics(tmp_path)
    resumed = [m for m in metrics if m["frames"] > stored]
    assert resumed and min(m["frames"] for m in resumed) > stored
    assert _stored_frames(tmp_path) >= 6000
    # The second run started from the stored weights, not from scratch: its
    # first step after resuming counted on from the stored step number.
    state = checkpoint.load_checkpoint(checkpoint.latest_checkpoint(tmp_path))
    # Frames count unrolls received (10 frames each, 4 per step); each of the two
    # runs may stop with at most one batch received but not yet trained on.
    assert 0 <= state["frames"] - 4 * 10 * state["train_steps"] <= 2 * 4 * 10
    assert not torch.equal(state["agent"]["model"]["policy.weight"], model_before["policy.weight"])


def test_finished_run_does_nothing_more(tmp_path):
    assert run_train(tmp_path, *FAST, "--total_environment_frames=1000").returncode == 0
    again = run_train(tmp_path, *FAST, "--total_environment_frames=1000")
    assert again.returncode == 0
    assert "nothing to do" in again.stderr


def test_sigterm_writes_final_checkpoint_then_resume(tmp_path):
    process = subprocess.Popen(
        train_command(tmp_path, *FAST, "--total_environment_frames=100000000"),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    def trained() -> bool:
        return any(m["train_steps"] > 0 for m in read_metrics(tmp_path))

    while time.monotonic() < deadline and not trained():
        time.sleep(0.5)
    assert trained(), "no training step within the deadline"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr[-3000:]
    stored = _stored_frames(tmp_path)
    assert stored > 0
    leftovers = list((tmp_path / "checkpoints").glob("*.tmp"))
    assert not leftovers

    again = run_train(tmp_path, *FAST, f"--total_environment_frames={stored + 400}", timeout=180)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"at {stored} frames" in again.stderr
    assert _stored_frames(tmp_path) >= stored + 400


def test_checkpoint_of_another_environment_is_refused(tmp_path):
    assert run_train(tmp_path, *FAST, "--total_environment_frames=400").returncode == 0
    other = run_train(tmp_path, "--env=Acrobot-v1", "--num_actors=1", "--total_environment_frames=400")
    assert other.returncode != 0
    assert "--env=CartPole-v1" in other.stderr and "Traceback" not in other.stderr


def test_save_is_atomic_and_keeps_newest(tmp_path):
    for frames in (10, 20, 30, 40):
        checkpoint.save_checkpoint(tmp_path, {"frames": frames}, frames, keep=2)
    names = [p.name for p in checkpoint.list_checkpoints(tmp_path)]
    assert names == ["ckpt-0000000000030.pt", "ckpt-0000000000040.pt"]

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        checkpoint.save_checkpoint(tmp_path, {"bad": Unpicklable()}, 50)
    assert checkpoint.latest_checkpoint(tmp_path).name == "ckpt-0000000000040.pt"
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))


def test_ctrl_c_to_the_process_group_stops_every_process(tmp_path):
    """A terminal's Ctrl-C signals the learner and its actors together."""
    import os

    process = subprocess.Popen(
        train_command(tmp_path, *FAST, "--num_actors=2", "--total_environment_frames=100000000"),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    group = os.getpgid(process.pid)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(m["train_steps"] > 0 for m in read_metrics(tmp_path)):
        time.sleep(0.5)
    os.killpg(group, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    assert _stored_frames(tmp_path) > 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            break  # no process of the run is left
        time.sleep(0.2)
    else:
        pytest.fail("actor processes outlived the learner after Ctrl-C")
