"""One exit contract (seed_rl.exits): user errors exit USER_ERROR with one line (tests/test_supervisor.py: what supervisors make of it)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from seed_rl import exits
from train_helpers import ROOT


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "argv, text",
    [
        (("seed_rl.train", "--no_such_flag=1"), "Unknown command line flag 'no_such_flag'"),
        (("seed_rl.train", "--env=CartPol-v1"), "did you mean 'CartPole-v1'"),
        (("seed_rl.actor", "--envs_per_actor=x"), "--envs_per_actor"),
        (("seed_rl.evaluate", "--logdir=/nonexistent/run"), "no such logdir"),
        (("seed_rl.train", "--server_address=127.0.0.1:8686"), "--server_address is now --learner_address"),
        # The same check as the Ray and Vertex AI launchers (seed_rl.launch.learners.check_learners).
        (("seed_rl.train", "--learner_max_restarts=2"), "--learner_max_restarts=2 needs --learners > 1"),
        (("seed_rl.train", "--learners=0"), "--learners=0: need at least one learner rank"),
    ],
)
def test_user_errors_end_with_one_line_and_the_user_error_code(argv, text):
    result = _run(*argv)
    assert result.returncode == exits.USER_ERROR, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and text in last, last


@pytest.mark.parametrize("module, argv", [
    ("seed_rl.evaluate", ["--episodes=1"]),  # --logdir is required
    ("seed_rl.launch.vertex_task", ["--actors_per_replica=0"]),
])
def test_argparse_clis_end_a_bad_command_line_as_a_user_error(module, argv):
    result = subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True, timeout=120)
    assert result.returncode == exits.USER_ERROR, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--help" in lines[0], result.stderr
