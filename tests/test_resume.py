"""Checkpoints are atomic, a re-run restores exactly what they hold, and one logdir holds one run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from seed_rl.learner import checkpoint, checkpoint_loading
from train_helpers import ROOT, read_metrics, run_train, train_command

FAST = ("--env=CartPole-v1", "--num_actors=1", "--envs_per_actor=4", "--unroll_length=10", "--batch_size=4")
# R2D2 with a replay that starts training within a few hundred frames.
R2D2_FAST = ("--env=CartPole-v1", "--num_actors=1", "--envs_per_actor=4", "--unroll_length=10", "--burn_in=2",
             "--sequence_period=5", "--batch_size=4", "--min_replay_size=8", "--replay_capacity=64")


def _stored_frames(logdir) -> int:
    return checkpoint_loading.load_checkpoint(checkpoint.latest_checkpoint(logdir))["frames"]


def _probe_restore(logdir, *flags: str) -> dict:
    """How the state a re-run of ``flags`` restores compares with the newest checkpoint (tests/restore_probe.py)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "restore_probe.py"), f"--logdir={logdir}", *flags],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "agent, flags, agent_keys",
    [
        ("impala", (*FAST, "--popart=true"), ["model", "optimizer", "scheduler"]),
        ("r2d2", R2D2_FAST, ["model", "optimizer", "target_model", "train_steps"]),
    ],
)
def test_a_rerun_restores_exactly_what_the_checkpoint_holds(tmp_path, agent, flags, agent_keys):
    first = run_train(tmp_path, f"--agent={agent}", *flags, "--total_environment_frames=3000", timeout=180)
    assert first.returncode == 0, first.stderr[-3000:]
    stored = checkpoint_loading.load_checkpoint(checkpoint.latest_checkpoint(tmp_path))
    assert stored["train_steps"] > 0 and stored["agent"]["optimizer"]["state"], "the first run never trained"
    if agent == "impala":  # PopArt's statistics, which moved, are among what must come back
        popart = {k: v for k, v in stored["agent"]["model"].items() if k.startswith("value_statistics.")}
        assert popart and int(popart["value_statistics.updates"]) > 0, sorted(stored["agent"]["model"])
    # Weights, optimizer moments, the schedule (IMPALA) or the target network (R2D2), the replay, the
    # counters and the return window all come back as stored; a learner that ignored the checkpoint, or
    # any part of it, would hold freshly initialised values here.
    probe = _probe_restore(tmp_path, f"--agent={agent}", *flags, "--total_environment_frames=6000")
    assert probe["agent_keys"] == agent_keys
    assert probe["mismatches"] == []
    assert probe["episodes_in_window"] > 0
    if agent == "impala":  # the decayed rate, not the initial one
        assert stored["agent"]["scheduler"]["last_epoch"] == stored["train_steps"]
        assert probe["learning_rate"] == pytest.approx(stored["agent"]["optimizer"]["param_groups"][0]["lr"])


def test_rerun_resumes_from_checkpoint_frame_count(tmp_path):
    first = run_train(tmp_path, *FAST, "--total_environment_frames=3000", timeout=180)
    assert first.returncode == 0, first.stderr[-3000:]
    stored = _stored_frames(tmp_path)
    assert stored >= 3000
    stored_episodes = checkpoint_loading.load_checkpoint(checkpoint.latest_checkpoint(tmp_path))["episodes"]["episodes"]

    second = run_train(tmp_path, *FAST, "--total_environment_frames=6000", timeout=180)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"at {stored} frames" in second.stderr
    metrics = read_metrics(tmp_path)
    resumed = [m for m in metrics if m["frames"] > stored]
    assert resumed and min(m["frames"] for m in resumed) > stored
    # The 100-episode window and the episode count came back with the checkpoint: no gap in the resumed curve.
    assert resumed[0]["episode_return_mean"] is not None and resumed[0]["episodes"] >= stored_episodes > 0
    assert _stored_frames(tmp_path) >= 6000
    state = checkpoint_loading.load_checkpoint(checkpoint.latest_checkpoint(tmp_path))
    # Frames count unrolls received (10 frames each, 4 per step); each of the two
    # runs may stop with at most one batch received but not yet trained on.
    assert 0 <= state["frames"] - 4 * 10 * state["train_steps"] <= 2 * 4 * 10


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


def _event_files(logdir) -> list:
    return sorted((logdir / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.parametrize("other", [("--env=Acrobot-v1",), ("--agent=r2d2",)], ids=["env", "agent"])
def test_checkpoint_of_another_run_is_refused_before_anything_is_written(tmp_path, other):
    assert run_train(tmp_path, *FAST, "--total_environment_frames=400").returncode == 0
    events, metrics = _event_files(tmp_path), (tmp_path / "metrics.jsonl").read_text()
    refused = run_train(tmp_path, *FAST, *other, "--total_environment_frames=400")
    assert refused.returncode != 0
    key = other[0].split("=")[0]
    stored = {"--env": "--env=CartPole-v1", "--agent": "--agent=impala"}[key]
    assert f"written by a run with {stored}" in refused.stderr and "Traceback" not in refused.stderr
    # Checked before the summary writer or the endpoints start: the other run's logdir is as it was.
    assert _event_files(tmp_path) == events and (tmp_path / "metrics.jsonl").read_text() == metrics
    assert not list(tmp_path.glob("*.sock"))


def test_a_second_run_on_a_live_logdir_is_refused_and_a_killed_one_resumes(tmp_path):
    first = subprocess.Popen(train_command(tmp_path, *FAST, "--total_environment_frames=100000000"), cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(m["train_steps"] > 0 for m in read_metrics(tmp_path)):
            time.sleep(0.5)
        second = run_train(tmp_path, *FAST, "--total_environment_frames=100000000", timeout=120)
        assert second.returncode != 0
        assert f"is in use by another run (pid {first.pid})" in second.stderr, second.stderr[-2000:]
        assert first.poll() is None, "the first run stopped"
        frames = [m["frames"] for m in read_metrics(tmp_path)]
        assert frames == sorted(frames), "two runs wrote one metrics.jsonl"
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # no goodbye: the kernel drops the lock with the process
        first.wait()
    again = run_train(tmp_path, *FAST, "--total_environment_frames=400", timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "in use by another run" not in again.stderr


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
    # Both actors running (a Ctrl-C that lands while an actor process is still importing its modules, before
    # it ignores SIGINT, ends that actor with a KeyboardInterrupt traceback: a known race of the spawn start).
    while time.monotonic() < deadline and not any(
            m["train_steps"] > 0 and m["actors_connected"] == 2 for m in read_metrics(tmp_path)):
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
