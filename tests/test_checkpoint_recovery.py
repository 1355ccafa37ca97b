"""What ``seed_rl.train`` and ``seed_rl.evaluate`` do with damaged, hostile and unwritable checkpoints, end to end."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seed_rl.learner import checkpoint, checkpoint_loading
from test_checkpoint_trust import damage, write_code_running_checkpoint
from test_resume import FAST, R2D2_FAST
from train_helpers import ROOT, read_metrics, run_train

OFTEN = ("--checkpoint_interval_s=0.5",)


def _largest_weight(path: Path) -> torch.Tensor:
    model = checkpoint_loading.load_checkpoint(path)["agent"]["model"]
    return max(model.values(), key=lambda t: t.numel())


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("W")]


@pytest.mark.parametrize("agent, flags, frames, kind", [
    ("impala", FAST, 20000, "zeroed-range"), ("impala", FAST, 20000, "truncated"),
    # R2D2's CartPole preset trains 8 times on each step: fewer frames take as long.
    ("r2d2", R2D2_FAST, 4000, "bit-flipped"), ("r2d2", R2D2_FAST, 4000, "zero-bytes"),
])
def test_a_resume_falls_back_from_a_damaged_newest_checkpoint(tmp_path, agent, flags, frames, kind):
    first = run_train(tmp_path, f"--agent={agent}", *flags, *OFTEN, f"--total_environment_frames={frames}",
                      timeout=240)
    assert first.returncode == 0, first.stderr[-3000:]
    *_, older, newer = checkpoint.list_checkpoints(tmp_path)
    damage(newer, kind, _largest_weight(newer))
    second = run_train(tmp_path, f"--agent={agent}", *flags, f"--total_environment_frames={frames * 3 // 2}",
                       timeout=240)
    assert second.returncode == 0, second.stderr[-3000:]
    warnings = [line for line in _warnings(second.stderr) if newer.name in line]
    assert len(warnings) == 1 and f"resumed from {older.name}" in warnings[0], second.stderr[-3000:]
    assert f"resumed from {older}" in second.stderr
    assert newer.with_name(newer.name + ".damaged").exists()
    assert read_metrics(tmp_path)[-1]["frames"] >= frames * 3 // 2


def run_evaluate(*flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "seed_rl.evaluate", *flags], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_train_and_evaluate_refuse_a_checkpoint_that_would_run_code(tmp_path):
    marker = tmp_path / "code-ran"
    path = write_code_running_checkpoint(tmp_path, marker)
    for result in (run_train(tmp_path, *FAST, "--total_environment_frames=2000", timeout=120),
                   run_evaluate(f"--logdir={tmp_path}", "--episodes=1")):
        assert result.returncode != 0
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and "names posix.system" in last and path.name in last, result.stderr
        assert "Traceback" not in result.stderr
    assert not marker.exists() and path.exists()


def test_evaluate_names_the_checkpoint_it_fell_back_to(tmp_path):
    first = run_train(tmp_path, *FAST, *OFTEN, "--total_environment_frames=20000", timeout=240)
    assert first.returncode == 0, first.stderr[-3000:]
    *_, older, newer = checkpoint.list_checkpoints(tmp_path)
    damage(newer, "truncated")
    result = run_evaluate(f"--logdir={tmp_path}", "--episodes=1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"using {older.name} instead" in result.stderr and f"evaluating {older}" in result.stdout
    assert newer.exists()  # evaluation leaves the logdir as it found it


@pytest.fixture
def small_checkpoint_dir(tmp_path):
    """``tmp_path/checkpoints`` on a tmpfs of its own (a real filesystem that can fill up or turn read-only)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a tmpfs")
    target = checkpoint.checkpoint_dir(tmp_path)
    target.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(target)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield target
    subprocess.run(["umount", "-l", str(target)], check=False)


@pytest.mark.parametrize("condition, reason", [("full", "No space left on device"), ("read-only", "Read-only")])
def test_a_full_or_read_only_checkpoint_directory_loses_nothing(tmp_path, small_checkpoint_dir, condition, reason):
    first = run_train(tmp_path, *FAST, *OFTEN, "--total_environment_frames=20000", timeout=240)
    assert first.returncode == 0, first.stderr[-3000:]
    *old, kept = checkpoint.list_checkpoints(tmp_path)
    for path in old:
        path.unlink()
    size = kept.stat().st_size
    # Room for the checkpoint there and half of another (the old ones are removed only after a new one is written).
    options = f"remount,size={size + size // 2}" if condition == "full" else "remount,ro"
    subprocess.run(["mount", "-o", options, str(small_checkpoint_dir)], check=True)
    frames_kept = checkpoint_loading.load_checkpoint(kept)["frames"]
    second = run_train(tmp_path, *FAST, *OFTEN, "--total_environment_frames=40000", timeout=240)
    assert second.returncode != 0  # the final checkpoint could not be written: an error, not a traceback
    lines = second.stderr.strip().splitlines()
    assert lines[-1].startswith("error: could not write the checkpoint") and reason in lines[-1], second.stderr
    assert kept.name in lines[-1] and "Traceback" not in second.stderr
    assert any("training goes on" in line and reason in line for line in _warnings(second.stderr))
    assert read_metrics(tmp_path)[-1]["frames"] >= 40000  # training went on to the budget
    assert checkpoint.list_checkpoints(tmp_path) == [kept]  # intact, and nothing partial beside it
    assert checkpoint_loading.load_checkpoint(kept)["frames"] == frames_kept
    assert sorted(p.name for p in small_checkpoint_dir.iterdir()) == [kept.name]
