"""Every script in tools/ that the docs tell readers to run at least parses and answers ``--help``.

A benchmark that no test runs end to end can still rot (an import pasted at
column 0 once made ``bench_security.py`` unparseable while three docs pages
named it): this catches that in the suite.
"""

from __future__ import annotations

import py_compile
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
