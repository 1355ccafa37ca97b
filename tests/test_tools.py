"""Every script in tools/ that the docs tell readers to run at least parses and answers ``--help``.

A benchmark that no test runs end to end can still rot (an import pasted at
column 0 once made ``bench_security.py`` unparseable while three docs pages
named it): this catches that in the suite. Benchmarks with no test of their own
that are cheap at a tiny size also run end to end here.
"""

from __future__ import annotations

import py_compile
import re
import subprocess
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"
PYTHON_TOOLS = sorted(TOOLS.glob("*.py"))
SHELL_TOOLS = sorted(TOOLS.glob("*.sh"))


def test_tools_are_found():
    assert len(PYTHON_TOOLS) >= 8 and len(SHELL_TOOLS) >= 3


@pytest.mark.parametrize("path", PYTHON_TOOLS, ids=lambda p: p.name)
def test_python_tool_compiles_and_answers_help(path: Path, tmp_path: Path):
    py_compile.compile(str(path), cfile=str(tmp_path / "compiled.pyc"), doraise=True)
    result = subprocess.run(
        [sys.executable, str(path), "--help"], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage" in (result.stdout + result.stderr).lower()


@pytest.mark.parametrize("path", SHELL_TOOLS, ids=lambda p: p.name)
def test_shell_tool_parses(path: Path):
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_bench_step_bytes_reports_todays_layout(tmp_path: Path):
    """tools/bench_step_bytes.py end to end on a few real Pong steps (behaviour, not numbers)."""
    pytest.importorskip("ale_py")
    result = subprocess.run(
        [sys.executable, str(TOOLS / "bench_step_bytes.py"), "--envs=2", "--steps=30"],
        capture_output=True, text=True, timeout=300, cwd=TOOLS.parent,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    row = re.search(r"1 frame, 4 stacked on the learner +([\d,]+) +([\d,]+) +([\d,]+) +([\d,]+) +\((\d+) unrolls\)",
                    result.stdout)
    assert row, result.stdout
    grpc, shm, store, unrolls, handed = (int(v.replace(",", "")) for v in row.groups())
    assert shm >= 84 * 84 > 0 and grpc > 0 and store > 0 and unrolls > 0 and handed > 0, result.stdout
    assert "actor" not in result.stdout, result.stdout  # the actor-stacked layout it compared against is gone


CHEAP_RUNS = {
    # Serves fake clients through the learner's own serving stack (InferenceService behind Endpoints).
    "bench_security.py": ["--seconds=1", "--repeats=1", "--clients=1", "--envs_per_client=2"],
    "bench_sum_tree.py": ["--capacity=1000", "--batch-sizes", "8", "--iters=3", "--repeats=1"],
    "bench_train_step.py": ["--env=CartPole-v1", "--agent=r2d2", "--variants=fp32", "--rounds=1", "--steps=1",
                            "--warmup_steps=0", "--threads=1"],
}


@pytest.mark.parametrize("script", sorted(CHEAP_RUNS))
def test_cheap_benchmarks_run_end_to_end_at_a_tiny_size(script: str):
    result = subprocess.run([sys.executable, str(TOOLS / script), *CHEAP_RUNS[script]], capture_output=True,
                            text=True, timeout=300, cwd=TOOLS.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"\d", result.stdout), result.stdout  # it printed measurements
