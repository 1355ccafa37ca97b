"""tools/bench_learners.py: its smallest configurations print sane tables and JSON (behaviour, not speed)."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

from train_helpers import ROOT

SCRIPT = ROOT / "tools" / "bench_learners.py"
SMALLEST = ["--learners=1,2", "--updates=2", "--warmup_updates=1", "--seconds=3", "--warmup_seconds=2"]


@functools.cache
def _tool():
    """The script as a module, for its pure pieces."""
    spec = importlib.util.spec_from_file_location("bench_learners", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _bench(*flags: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *flags], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def _table(stdout: str, header: str) -> list[list[str]]:
    """The rows of the markdown table whose header starts with ``header``."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _check_updates(stdout: str, updates: list[dict], agents: list[str]) -> None:
    rows = _table(stdout, "| agent | ranks | batch per rank |")
    assert [(r[0], r[1], r[2]) for r in rows] == [(a, str(n), str(32 // n)) for n in (1, 2) for a in agents]
    by_key = {(u["agent"], u["ranks"]): u for u in updates}
    for row in rows:
        update = by_key[(row[0], int(row[1]))]
        assert update["update_s"] > 0 and update["update_cpu_s"] > 0 and update["parameters"] > 0
        assert row[3] == f"{1e3 * update['update_s']:.2f}"
        assert row[6] == f"{update['update_s'] / by_key[(row[0], 1)]['update_s']:.2f}x"
        if update["ranks"] == 1:  # no collectives on one learner
            assert row[4] == row[5] == "—" and update["all_reduce_s"] is None and update["exchange_s"] is None
        else:
            assert update["all_reduce_s"] > 0 and update["exchange_s"] > 0
            assert row[4] == f"{1e3 * update['all_reduce_s']:.2f}" and row[5] == f"{1e6 * update['exchange_s']:.0f}"
    for agent in agents:  # both rank counts train the same network
        assert by_key[(agent, 1)]["parameters"] == by_key[(agent, 2)]["parameters"]


def test_update_part_times_both_agents_on_one_and_two_ranks(tmp_path):
    result = _bench(*SMALLEST, "--skip_end_to_end", f"--json={tmp_path / 'out.json'}", timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    data = json.loads((tmp_path / "out.json").read_text())
    _check_updates(result.stdout, data["updates"], ["impala", "r2d2"])
    assert "runs" not in data and "Part B" not in result.stdout


@pytest.mark.slow
def test_both_parts_on_one_and_two_ranks(tmp_path):
    result = _bench(*SMALLEST, "--agents=impala", "--image", f"--json={tmp_path / 'out.json'}", timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    data = json.loads((tmp_path / "out.json").read_text())
    assert data["image"] is True
    _check_updates(result.stdout, data["updates"], ["impala"])
    rows = _table(result.stdout, "| ranks | training frames/s |")
    assert [row[0] for row in rows] == ["1", "2"] and [r["ranks"] for r in data["runs"]] == [1, 2]
    for row, run in zip(rows, data["runs"]):
        assert run["frames"] > 0 and run["window_s"] > 0 and run["learner_cpu_s"] > 0
        assert run["training_fps"] == pytest.approx(run["frames"] / run["window_s"])
        assert run["cpu_ms_per_kframe"] == pytest.approx(1e6 * run["learner_cpu_s"] / run["frames"])
        # The ranks can use at most every core over the window (a clock tick of slack at each end).
        assert run["learner_cpu_s"] <= os.cpu_count() * run["window_s"] + 0.5
        assert row[1] == f"{run['training_fps']:,.0f}"
        assert row[3] == f"{run['training_fps'] / data['runs'][0]['training_fps']:.2f}x"


def test_batch_share_cuts_the_batch_dimension_of_every_field():
    tool = _tool()
    batch = {
        "observation": torch.arange(3 * 4 * 2).reshape(3, 4, 2),
        "agent_outputs": {"policy_logits": torch.zeros(3, 4, 5)},
        "initial_core_state": (torch.arange(4), torch.zeros(4, 7)),
        "importance_weights": torch.arange(4.0),
    }
    share = tool.batch_share(batch, rank=1, ranks=2)
    assert torch.equal(share["observation"], batch["observation"][:, 2:])
    assert share["agent_outputs"]["policy_logits"].shape == (3, 2, 5)
    assert torch.equal(share["initial_core_state"][0], torch.tensor([2, 3]))
    assert share["initial_core_state"][1].shape == (2, 7)
    assert torch.equal(share["importance_weights"], torch.tensor([2.0, 3.0]))


def test_window_rate_uses_the_summaries_time_stamps():
    records = [{"frames": 100, "time": 10.0}, {"frames": 600, "time": 11.0}, {"frames": 2100, "time": 13.5}]
    assert _tool().window_rate(records, start=2) == (1500, 2.5)


def test_rank_pids_finds_only_children_with_a_rank(tmp_path):
    tool = _tool()
    ranked = subprocess.Popen(["sleep", "30"], env={**os.environ, "RANK": "0"})
    plain_env = {k: v for k, v in os.environ.items() if k != "RANK"}
    plain = subprocess.Popen(["sleep", "30"], env=plain_env)
    try:
        assert tool.rank_pids(os.getpid()) == [ranked.pid]
        assert tool.cpu_seconds(ranked.pid) >= 0
    finally:
        for process in (ranked, plain):
            process.kill()
            process.wait()


def test_uneven_batches_and_unknown_agents_are_refused():
    tool = _tool()
    with pytest.raises(SystemExit):
        tool.parse_args(["--learners=1,3", "--batch_size=32"])
    with pytest.raises(SystemExit):
        tool.parse_args(["--agents=impala,dqn"])
    assert tool.parse_args(["--learners=1,2,4"]).rank_counts == [1, 2, 4]
