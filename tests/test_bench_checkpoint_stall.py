"""tools/bench_checkpoint_stall.py runs and reports both ways of writing a checkpoint (behaviour, not speed)."""

from __future__ import annotations

import re
import subprocess
import sys

from train_helpers import ROOT


def test_reports_inline_and_background_stalls(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "bench_checkpoint_stall.py"), "--sequences=3", f"--dir={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"inline checkpoint: the training thread waits [\d.]+ s", result.stdout), result.stdout
    assert re.search(r"background checkpoint: the training thread waits [\d.]+ ms; the write takes [\d.]+ s",
                     result.stdout), result.stdout
    assert re.search(r"stall ratio background / inline = [\d.]+", result.stdout)
    assert list(tmp_path.iterdir()) == []  # both checkpoints were written in temporary directories, now gone
