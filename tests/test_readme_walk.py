"""The README's first commands, in its order, as a new user runs them: train Atari with ``./run_local.sh atari``
(a tiny budget instead of 30M frames, a temporary logdir), then evaluate the run, with and without a video.

``./run_tests.sh``, the README's second command, is what runs this test.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from train_helpers import ROOT

pytest.importorskip("ale_py")
README = (ROOT / "README.md").read_text()


def _run(command: list[str], timeout: float) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout[-2000:]}{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_the_readme_quickstart_then_evaluation_in_order(tmp_path):
    quickstart = re.search(r"```bash\n(.*?)```", README, re.S).group(1).split("\n")
    assert quickstart[0].startswith("./run_local.sh atari ") and quickstart[1].startswith("./run_tests.sh ")
    evaluations = re.findall(r"^\.venv/bin/python -m seed_rl\.evaluate .*$", README, re.M)
    assert len(evaluations) == 2 and "--video=" in evaluations[1]
    logdir = tmp_path / "pong"
    _run(["./run_local.sh", "atari", "--total_environment_frames=1600", f"--logdir={logdir}"], timeout=600)
    assert list((logdir / "checkpoints").glob("ckpt-*.pt"))
    for command in evaluations:
        argv = command.split()
        argv = [a for a in argv if not a.startswith(("--logdir=", "--episodes=", "--video="))]
        video = tmp_path / "pong.mp4"
        extra = [f"--video={video}"] if "--video=" in command else []
        result = _run([sys.executable, *argv[1:], f"--logdir={logdir}", "--episodes=1", *extra], timeout=600)
        assert "return mean" in result.stdout
        assert json.loads((logdir / "evaluation.json").read_text())["episodes"] == 1
        if extra:
            assert video.stat().st_size > 0
