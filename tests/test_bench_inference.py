"""tools/bench_inference.py: the learner-capacity benchmark runs, and churn leaves the learner's memory flat."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from train_helpers import ROOT

SCRIPT = str(ROOT / "tools" / "bench_inference.py")

pytest.importorskip("ale_py")


def _bench(tmp_path, *flags: str, timeout: float = 240) -> dict:
    out = tmp_path / "bench.json"
    result = subprocess.run([sys.executable, SCRIPT, *flags, f"--json={out}"], cwd=ROOT, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return json.loads(out.read_text())


def test_synthetic_actors_are_served_by_the_model_and_the_noop_learner_over_both_transports(tmp_path):
    result = _bench(tmp_path, "--actors=2", "--envs_per_actor=4", "--seconds=2", "--warmup_seconds=2")
    rows = result["rows"]
    assert [(r["transport"], r["learner"]) for r in rows] == [
        ("grpc", "model"), ("grpc", "noop"), ("shm", "model"), ("shm", "noop")
    ]
    for row in rows:
        assert row["env_steps_per_s"] > 0 and row["cpu_us_per_step"] > 0
        assert 1 <= row["mean_inference_batch"] <= 8.5  # window edges can split a batch
        if row["learner"] == "model":
            assert row["forward_us_per_step"] > 0 and row["store_us_per_step"] > 0
            stages = (row["forward_us_per_step"] + row["store_us_per_step"]
                      + row["transport_decode_batching_us_per_step"])
            assert stages == pytest.approx(row["cpu_us_per_step"], rel=1e-6)
        else:
            assert row["forward_us_per_step"] == 0 and row["store_us_per_step"] == 0


def test_actors_that_come_and_go_leave_the_learner_flat(tmp_path):
    # Three workers: two stream over gRPC, one over shared memory.
    # The churn runs on past its 10 s until 15 connections and 2 kills have happened (at most 100 s), so a
    # loaded machine makes it slower, not red.
    result = _bench(tmp_path, "--churn", "--actors=3", "--envs_per_actor=4", "--seconds=10",
                    "--kill_seconds=2", "--sample_seconds=0.5", "--min_connections=15", "--min_kills=2")
    samples = result["samples"]
    assert result["connections"] >= 15 and result["killed"] >= 2, result
    assert result["env_steps"] > 0
    # Streams that ended, cleanly or not, gave their environments back: the
    # state table never grew past its first allocation, and RSS stayed put.
    assert {s["state_slots"] for s in samples} == {samples[0]["state_slots"]}
    assert max(s["envs_connected"] for s in samples) <= samples[0]["state_slots"]
    assert samples[-1]["envs_connected"] <= 3 * 4
    assert samples[-1]["rss_mb"] - samples[len(samples) // 3]["rss_mb"] < 40, samples
