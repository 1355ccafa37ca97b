"""One exit contract (seed_rl.exits): user errors exit USER_ERROR with one line; supervisors stop on them only."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from seed_rl import exits
from seed_rl.launch import vertex_task
from seed_rl.launch.ray_processes import ChildExit
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
    ],
)
def test_user_errors_end_with_one_line_and_the_user_error_code(argv, text):
    result = _run(*argv)
    assert result.returncode == exits.USER_ERROR, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and text in last, last


def test_vertex_replica_restarts_crashes_and_stops_on_a_user_error(tmp_path):
    counter = tmp_path / "starts"
    # Crashes (exit 1) on its first two starts, then hits a user error.
    script = (
        "import pathlib, sys; p = pathlib.Path(sys.argv[1]); n = int(p.read_text()) if p.exists() else 0; "
        f"p.write_text(str(n + 1)); sys.exit(1 if n < 2 else {exits.USER_ERROR})"
    )
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = vertex_task.supervise_actors([[sys.executable, "-c", script, str(counter)]], poll_s=0.05)
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    assert code == exits.USER_ERROR
    assert counter.read_text() == "3"


def test_ray_actor_exit_is_judged_by_its_code_not_its_output():
    assert ChildExit(exits.USER_ERROR, ["error: unknown environment id 'X'"]).is_user_error()
    assert not ChildExit(1, ["error: looks like one, but a crash exit code"]).is_user_error()
    assert not ChildExit(-9, []).is_user_error()
    assert ChildExit(exits.USER_ERROR, ["error: unknown environment id 'X'"]).reason() == "unknown environment id 'X'"
