"""The one process supervisor (seed_rl.launch.supervisor): crash -> restart, user error -> stop, 0 -> finished."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from seed_rl import exits
from seed_rl.launch import vertex_task
from seed_rl.launch.supervisor import CommandChild, Outcome, Supervisor, exit_reason, outcome
from process_helpers import pid_alive

FAST = dict(poll_s=0.02, min_healthy_s=0.0, crash_backoff_s=0.0, stop_grace_s=2.0)
# Counts its starts in argv[1]; exits with the code listed for that start (argv[2:]), the last one thereafter.
COUNTED = (
    "import pathlib, sys; p = pathlib.Path(sys.argv[1]); n = int(p.read_text()) if p.exists() else 0; "
    "p.write_text(str(n + 1)); codes = [int(c) for c in sys.argv[2:]]; "
    "print(f'error: start {n}', file=sys.stderr) if codes[min(n, len(codes) - 1)] == 3 else None; "
    "sys.exit(codes[min(n, len(codes) - 1)])"
)


def _counted(counter: Path, *codes: int) -> list[str]:
    return [sys.executable, "-c", COUNTED, str(counter), *map(str, codes)]


def test_the_contract():
    assert outcome(0) is Outcome.FINISHED
    assert outcome(exits.USER_ERROR) is Outcome.USER_ERROR
    for code in (1, 2, 4, 137, -9, -15):
        assert outcome(code) is Outcome.RESTART


def test_a_crashed_child_is_restarted_and_the_group_finishes_when_every_child_exits_0(tmp_path):
    crashes, clean = tmp_path / "crashes", tmp_path / "clean"
    commands = [_counted(crashes, 1, 2, 0), _counted(clean, 0)]
    ending = Supervisor(lambda i: CommandChild(commands[i]), 2, **FAST).run()
    assert ending.outcome is Outcome.FINISHED and ending.exit_code == 0
    assert crashes.read_text() == "3"  # crashed twice, restarted twice, then finished
    assert clean.read_text() == "1"  # finished at once: never restarted


def test_a_user_error_stops_the_group_with_the_childs_own_line(tmp_path):
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    commands = [sleeper, _counted(tmp_path / "n", 1, exits.USER_ERROR)]
    children: list[CommandChild] = []

    def start(i: int) -> CommandChild:
        children.append(CommandChild(commands[i], label=f"child {i}"))
        return children[-1]

    started = time.monotonic()
    ending = Supervisor(start, 2, **FAST).run()
    assert ending.outcome is Outcome.USER_ERROR and ending.exit_code == exits.USER_ERROR
    assert ending.index == 1 and ending.reason == "start 1"
    assert (tmp_path / "n").read_text() == "2"
    assert time.monotonic() - started < 30
    assert all(child.poll() is not None for child in children)  # the sleeper was stopped too


def test_a_crash_soon_after_start_waits_before_its_restart(tmp_path):
    options = {**FAST, "min_healthy_s": 60.0, "crash_backoff_s": 0.5}
    started = time.monotonic()
    ending = Supervisor(lambda i: CommandChild(_counted(tmp_path / "n", 1, 1, 0)), 1, **options).run()
    assert ending.outcome is Outcome.FINISHED
    assert time.monotonic() - started >= 1.0  # two crashes, two pauses


def test_stop_terminates_children_then_kills_those_that_ignore_it():
    stubborn = [sys.executable, "-c",
                "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"]
    polite = [sys.executable, "-c", "print('ready', flush=True); import time; time.sleep(60)"]
    commands = [stubborn, polite]
    children: list[CommandChild] = []

    def start(i: int) -> CommandChild:
        children.append(CommandChild(commands[i], stdout=subprocess.PIPE, text=True))
        return children[-1]

    supervisor = Supervisor(start, 2, **{**FAST, "stop_grace_s": 1.0})
    result = []
    thread = threading.Thread(target=lambda: result.append(supervisor.run()))
    thread.start()
    deadline = time.monotonic() + 30
    while len(children) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    for child in children:  # both have set up their signal handling
        assert child._popen.stdout.readline().strip() == "ready"
    pids = supervisor.pids()
    supervisor.stop()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert result[0].outcome is None and result[0].exit_code == 0
    assert children[0].poll() == -signal.SIGKILL
    assert children[1].poll() == -signal.SIGTERM
    assert not any(pid_alive(pid) for pid in pids)


def test_stop_before_run_starts_nothing():
    supervisor = Supervisor(lambda i: pytest.fail("started a child"), 3, **FAST)
    supervisor.stop()
    assert supervisor.run().outcome is None


def test_exit_reason_prefers_the_childs_error_line():
    assert exit_reason(exits.USER_ERROR, ["warning: x", "error: unknown environment id 'X'"]) == "unknown environment id 'X'"
    assert exit_reason(-9, []) == "was killed by signal 9"
    assert exit_reason(1, ["Traceback", "ValueError: boom", ""]) == "exited with code 1; last output: ValueError: boom"


def test_vertex_replica_restarts_crashes_and_stops_on_a_user_error(tmp_path):
    counter = tmp_path / "starts"
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = vertex_task.supervise_actors([_counted(counter, 1, 1, exits.USER_ERROR)], **FAST)
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    assert code == exits.USER_ERROR
    assert counter.read_text() == "3"
