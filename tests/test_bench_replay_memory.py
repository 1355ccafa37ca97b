"""tools/bench_replay_memory.py runs end to end on a tiny replay and reports every section (behaviour, not numbers)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from train_helpers import ROOT

pytest.importorskip("ale_py")


def test_reports_codecs_memory_checkpoints_and_rss(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "bench_replay_memory.py"), "--capacity=2000", "--record_steps=2400",
         "--envs=2", "--checkpoint_sequences=5", "--codec_chunks=5", "--sample_batches=2", f"--dir={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert re.search(r"zstd level 3 +[\d.]+ +\d+ MB/s +\d+ MB/s", out), out
    assert re.search(r"\(a\) replay bytes .*\n  [\d,]+ B per sequence, [\d,]+ B per stored step", out), out
    assert re.search(r"\(b\) checkpoint bytes per sequence.*\n +[\d,]+ B per sequence\n"
                     r"  state_dict\(\) on the training thread: [\d.]+ ms for 5 sequences", out), out
    assert re.search(r"\(c\) a full replay of 2,000 Pong sequences", out), out
    assert not re.search(r"\bold\b", out), out  # the full-copy format it compared against left the package
    rss = re.search(r"RSS before [\d.]+ GiB, after [\d.]+ GiB, delta -?[\d.]+ GiB = (-?[\d,]+) B per sequence", out)
    # zstd frames kept as zstandard returns them hold their input-sized allocation: ~54 KB per sequence here.
    assert rss and int(rss.group(1).replace(",", "")) < 20_000, out
    assert "sample 64 sequences on the calling thread" in out and "with 4 decompression threads" in out
    assert list(tmp_path.iterdir()) == []  # the checkpoints went to a temporary directory, now gone
