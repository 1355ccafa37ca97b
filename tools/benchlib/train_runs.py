"""What benchmark tools that run ``seed_rl.train`` as a process share: reading its metrics while it runs, waiting on it."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Callable


def read_metrics(path: Path) -> list[dict]:
    """The complete JSON lines of a running learner's ``metrics.jsonl`` so far (none before the file exists)."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line still being written
    return records


def wait_while_running(
    condition: Callable[[], bool], timeout_s: float, process: subprocess.Popen, what: str,
    output: Callable[[], str] = lambda: "",
) -> None:
    """Polls ``condition`` until true; raises RuntimeError (with ``output()``) if ``process`` exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if process.poll() is not None:
            raise RuntimeError(f"seed_rl.train exited with code {process.returncode} while {what}{output()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:.0f} s {what}{output()}")
        time.sleep(0.2)
