"""tools/bench_scaling.py: runs its smallest configuration and prints a sane table (behaviour, not speed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from benchlib import learner_flags, scaling_report
from benchlib.netns_hosts import PrivateHosts, existing_namespaces, remove_stale, unavailable_reason
from train_helpers import ROOT

SCRIPT = str(ROOT / "tools" / "bench_scaling.py")
SMALLEST = ["--actors=1", "--envs_per_actor=2", "--seconds=3", "--warmup_seconds=1", "--raw_seconds=0.5"]
NETNS_SKIP = unavailable_reason()


def _bench(*flags: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, *flags], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _table_rows(stdout: str) -> list[list[str]]:
    lines = [line for line in stdout.splitlines() if line.startswith("|")]
    assert lines[0].startswith("| actors | envs | training frames/s"), stdout
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def _check_sane(result: subprocess.CompletedProcess, json_path) -> dict:
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    rows = _table_rows(result.stdout)
    assert len(rows) == 1 and rows[0][:2] == ["1", "2"], result.stdout
    (point,) = json.loads(json_path.read_text())["points"]
    assert point["actors"] == 1 and point["envs"] == 2
    assert point["training_fps"] > 0 and point["raw_fps"] > 0
    assert 0 < point["inference_batch"] <= 2  # never more environments than exist
    assert point["summaries"] >= 2 and point["window_s"] > 0
    cores = os.cpu_count()
    assert 0 < point["learner_cpu"] <= point["machine_cpu"] + 0.05 <= cores + 0.1
    assert 0 < point["actors_cpu"] <= cores + 0.1
    assert rows[0][2] == f"{point['training_fps']:,.0f}" and rows[0][3] == "1.00x"
    return point


def test_processes_mode_prints_a_sane_table(tmp_path):
    result = _bench("--mode=processes", *SMALLEST, f"--json={tmp_path / 'out.json'}")
    _check_sane(result, tmp_path / "out.json")
    assert "processes on loopback, learner at 127.0.0.1:" in result.stdout


def test_window_rate_weights_each_summary_by_its_duration():
    records = [
        {"frames": 0, "fps": 0.0, "inference_batch_size": 0.0},  # before the window
        {"frames": 1000, "fps": 1000.0, "inference_batch_size": 4.0},  # 1 s
        {"frames": 4000, "fps": 1000.0, "inference_batch_size": 8.0},  # 3 s
        {"frames": 4000, "fps": 0.0, "inference_batch_size": 0.0},  # a stalled second
    ]
    fps, seconds, batch = scaling_report.window_rate(records, 1, 4)
    assert seconds == pytest.approx(5.0) and fps == pytest.approx(800.0) and batch == pytest.approx(6.0)


def test_a_window_without_frames_reports_n_a_instead_of_failing():
    stalled = scaling_report.Point(1, 2, 0.0, 5000.0, 90000.0, 0.0, 0.1, 0.0, 2.0, 3.0, 3)
    table = scaling_report.format_table([stalled], cpus=2)
    assert "| 1 | 2 | 0 | n/a |" in table and "n/a, n/a" in table
    assert any("no frames were trained" in line for line in scaling_report.summary_lines([stalled], cpus=2))
    assert json.loads(json.dumps(stalled.to_json(), allow_nan=False))["cpu_us_per_frame"]["learner"] is None


def test_insecure_is_passed_only_off_loopback_and_only_when_the_learner_knows_it(monkeypatch):
    flags = {"role", "insecure"}
    monkeypatch.setattr(learner_flags, "learner_flag_names", lambda: flags)
    assert learner_flags.learner_security_flags("127.0.0.1:8686", []) == []
    assert learner_flags.learner_security_flags("10.200.0.1:8686", []) == ["--insecure"]
    assert learner_flags.learner_security_flags("10.200.0.1:8686", ["--noinsecure", "--tls_cert=x"]) == []
    flags.discard("insecure")  # a seed_rl from before the security work
    assert learner_flags.learner_security_flags("10.200.0.1:8686", []) == []


def test_learner_flag_names_reads_the_real_flags():
    names = learner_flags.learner_flag_names()
    assert {"role", "learner_address", "num_actors", "log_interval_s"} <= names
    assert "no_such_flag" not in names


def test_bad_actor_list_is_one_clear_error():
    result = _bench("--mode=processes", "--actors=1,two")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "--actors must be comma-separated integers" in result.stderr


@pytest.mark.skipif(NETNS_SKIP is not None, reason=f"network namespaces unavailable: {NETNS_SKIP}")
def test_private_hosts_reach_each_other_and_vanish_on_error():
    server = "import socket; s = socket.create_server(('10.200.0.1', 9000)); c, _ = s.accept(); c.sendall(b'hello')"
    client = "import socket, time; time.sleep(0.5); print(socket.create_connection(('10.200.0.1', 9000), timeout=5).recv(5).decode())"
    with pytest.raises(RuntimeError, match="boom"):
        with PrivateHosts(["one", "two"]) as hosts:
            names = [hosts.namespace("one"), hosts.namespace("two")]
            assert set(names) <= set(existing_namespaces())
            listener = subprocess.Popen(hosts.command("one", [sys.executable, "-c", server]))
            reply = subprocess.run(hosts.command("two", [sys.executable, "-c", client]), capture_output=True, text=True, timeout=30)
            listener.wait(timeout=10)
            assert reply.stdout.strip() == "hello", reply.stderr
            raise RuntimeError("boom")
    assert not set(names) & set(existing_namespaces())


@pytest.mark.skipif(NETNS_SKIP is not None, reason=f"network namespaces unavailable: {NETNS_SKIP}")
def test_netns_mode_prints_a_sane_table_and_removes_its_namespaces(tmp_path):
    process = subprocess.Popen(
        [sys.executable, SCRIPT, "--mode=netns", *SMALLEST, f"--json={tmp_path / 'out.json'}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    stdout, stderr = process.communicate(timeout=120)
    _check_sane(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), tmp_path / "out.json")
    # The learner listens on its namespace's private address; actors in other namespaces reached it.
    assert "(learner, 10.200.0.1:8686)" in stdout
    assert not [n for n in existing_namespaces() if n.startswith(f"seedbench{process.pid}-")]


@pytest.mark.skipif(NETNS_SKIP is not None, reason=f"network namespaces unavailable: {NETNS_SKIP}")
def test_namespaces_of_a_killed_run_are_removed_by_the_next():
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale, live = f"seedbench{gone.pid}-learner", f"seedbench{os.getpid()}-learner"
    for name in (stale, live):
        subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        assert stale in remove_stale()
        assert stale not in existing_namespaces() and live in existing_namespaces()
    finally:
        for name in (stale, live):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


def _learner_children(pid: int) -> set[int]:
    """Child processes of ``pid`` that run the learner."""
    children = set()
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                is_learner = b"--role=learner" in f.read()
        except (ValueError, OSError):
            continue
        if parent == pid and is_learner:
            children.add(int(entry))
    return children


@pytest.mark.skipif(NETNS_SKIP is not None, reason=f"network namespaces unavailable: {NETNS_SKIP}")
def test_ctrl_c_stops_the_learner_and_removes_namespaces():
    process = subprocess.Popen(
        [sys.executable, SCRIPT, "--mode=netns", "--actors=1", "--envs_per_actor=1", "--seconds=300"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not _learner_children(process.pid) and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            time.sleep(0.1)
        learners = _learner_children(process.pid)
        assert learners, "the learner did not start"
        assert [n for n in existing_namespaces() if n.startswith(f"seedbench{process.pid}-")]
        process.send_signal(signal.SIGINT)  # as Ctrl-C would; stops the learner while it starts up
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
            remove_stale()  # leave nothing behind even when the test fails
    assert process.returncode != 0 and "interrupted" in stderr and "Traceback" not in stderr
    assert not [pid for pid in learners if os.path.exists(f"/proc/{pid}")], "the learner outlived the benchmark"
    assert not [n for n in existing_namespaces() if n.startswith(f"seedbench{process.pid}-")]
