"""Runs ``python -m seed_rl.train`` as a subprocess, as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def train_command(logdir: Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "seed_rl.train", f"--logdir={logdir}", "--log_interval_s=1", *flags]


def run_train(logdir: Path, *flags: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        train_command(logdir, *flags), cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def read_metrics(logdir: Path) -> list[dict]:
    path = Path(logdir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
