"""Short training runs of ``python -m seed_rl.train`` on environments defined in tests/."""

from __future__ import annotations

import math
import os
import subprocess

from train_helpers import ROOT, read_metrics, train_command

TESTS = ROOT / "tests"


def train_with_tests_on_path(logdir, *flags, timeout=240) -> subprocess.CompletedProcess:
    """``python -m seed_rl.train`` with tests/ on PYTHONPATH, so ``odd_envs:<id>`` imports."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    return subprocess.run(
        train_command(logdir, *flags), cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env
    )


def check_run(result, logdir, frames: int) -> dict:
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    metrics = read_metrics(logdir)
    last = metrics[-1]
    assert last["frames"] >= frames
    assert last["train_steps"] > 0
    assert last["episodes"] >= 2
    assert math.isfinite(last["loss/total"])
    assert list((logdir / "checkpoints").glob("ckpt-*.pt"))
    return last


SMALL_IMPALA = ("--agent=impala", "--num_actors=1", "--envs_per_actor=2", "--unroll_length=5", "--batch_size=2")
SMALL_R2D2 = (
    "--agent=r2d2", "--num_actors=1", "--envs_per_actor=2", "--lstm_size=16", "--head_size=16",
    "--unroll_length=4", "--burn_in=2", "--sequence_period=2", "--batch_size=2", "--min_replay_size=2",
    "--replay_capacity=50",
)
