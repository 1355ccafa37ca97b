"""The one process supervisor: keeps a group of child processes running under one exit contract.

Local training's actor processes, the actor processes of a Vertex AI replica
and the seed_rl process inside each Ray actor are all supervised here, and a
child's end means the same everywhere (``seed_rl.exits``):

- exit code 0: the child has finished; it is not restarted, and the group
  has finished once every child has;
- :data:`seed_rl.exits.USER_ERROR`: a user error that a restart cannot fix;
  the supervisor stops the whole group and reports it;
- anything else (a crash, a signal, the OOM killer): the child is restarted,
  after a short pause when it had run only briefly, so a crash loop does not
  spin.

Stopping (``stop()``, from another thread or a signal handler) ends every
child: terminated first, killed if it outlives a grace period.
"""

from __future__ import annotations

import collections
import enum
import logging
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol

from seed_rl import exits

log = logging.getLogger("seed_rl.launch.supervisor")

# A child that ends sooner than this after starting waits CRASH_BACKOFF_S before its restart.
MIN_HEALTHY_S = 10.0
CRASH_BACKOFF_S = 5.0
STOP_GRACE_S = 10.0
TAIL_LINES = 40


class Outcome(enum.Enum):
    FINISHED = "finished"
    USER_ERROR = "user error"
    RESTART = "restart"


def outcome(returncode: int) -> Outcome:
    """What a child's exit code means for its supervisor: the one fatal-exit contract."""
    if returncode == 0:
        return Outcome.FINISHED
    if exits.is_user_error(returncode):
        return Outcome.USER_ERROR
    return Outcome.RESTART


def describe_exit(returncode: int) -> str:
    """``was killed by signal 9`` / ``exited with code 1``, for log lines."""
    return f"was killed by signal {-returncode}" if returncode < 0 else f"exited with code {returncode}"


class Child(Protocol):
    """A started child process, as the supervisor needs it."""

    @property
    def pid(self) -> int | None: ...

    def poll(self) -> int | None:
        """The exit code once the child has ended, else None."""

    def terminate(self) -> None: ...

    def kill(self) -> None: ...

    def wait(self, timeout: float | None = None) -> int | None:
        """Waits up to ``timeout`` seconds; the exit code, or None if still running."""

    def reason(self) -> str:
        """One line on how the child ended: its own ``error:`` line when it printed one."""


class CommandChild:
    """A child command (``subprocess.Popen``); with a ``label``, its stderr is echoed with that prefix and its tail kept."""

    def __init__(self, argv: list[str], label: str | None = None, **popen_kwargs):
        if label is not None:
            popen_kwargs.update(stderr=subprocess.PIPE, text=True, errors="replace")
        self._popen = subprocess.Popen(argv, **popen_kwargs)
        self._tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._relay: threading.Thread | None = None
        if label is not None:
            self._relay = threading.Thread(target=self._echo, args=(label,), name=f"stderr-{label}", daemon=True)
            self._relay.start()

    def _echo(self, label: str) -> None:
        assert self._popen.stderr is not None
        for line in self._popen.stderr:
            sys.stderr.write(f"[{label}] {line}")
            sys.stderr.flush()
            self._tail.append(line.rstrip("\n"))

    @property
    def pid(self) -> int | None:
        return self._popen.pid

    def poll(self) -> int | None:
        return self._finish(self._popen.poll())

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            return self._finish(self._popen.wait(timeout))
        except subprocess.TimeoutExpired:
            return None

    def _finish(self, returncode: int | None) -> int | None:
        if returncode is not None and self._relay is not None:
            self._relay.join(timeout=5)  # its last lines, the error line among them
        return returncode

    def send_signal(self, signum: int) -> None:
        if self._popen.poll() is None:
            self._popen.send_signal(signum)

    def terminate(self) -> None:
        if self._popen.poll() is None:
            self._popen.terminate()

    def kill(self) -> None:
        if self._popen.poll() is None:
            self._popen.kill()

    def tail(self) -> list[str]:
        return list(self._tail)

    def reason(self) -> str:
        return exit_reason(self._popen.returncode, self.tail())


def exit_reason(returncode: int | None, tail: list[str]) -> str:
    """The child's own ``error:`` line when its output has one, else how it ended and its last line."""
    for line in reversed(tail):
        if line.startswith("error:"):
            return line[len("error:"):].strip()
    how = "still running" if returncode is None else describe_exit(returncode)
    last = next((line.strip() for line in reversed(tail) if line.strip()), "")
    return how + (f"; last output: {last}" if last else "")


class ProcessChild:
    """A ``multiprocessing.Process`` child (local training's actors)."""

    def __init__(self, process):
        self._process = process
        process.start()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int | None:
        self._process.join(timeout)
        return self._process.exitcode

    def terminate(self) -> None:
        if self._process.exitcode is None:
            self._process.terminate()

    def kill(self) -> None:
        if self._process.exitcode is None:
            self._process.kill()

    def reason(self) -> str:
        return exit_reason(self._process.exitcode, [])


@dataclass(frozen=True)
class Ending:
    """How a supervised group ended: every child finished, one hit a user error, or it was stopped."""

    outcome: Outcome | None  # None: stopped from outside
    index: int | None = None
    reason: str = ""

    @property
    def exit_code(self) -> int:
        """The exit code for the supervising process: the user error's, else 0."""
        return exits.USER_ERROR if self.outcome is Outcome.USER_ERROR else 0


class Supervisor:
    """Runs ``count`` children made by ``start(i)`` until they finish, one hits a user error, or ``stop()``.

    ``name`` labels child ``i`` in log lines: ``name.format(i=i)``.
    """

    def __init__(
        self,
        start: Callable[[int], Child],
        count: int,
        name: str = "actor process {i}",
        poll_s: float = 0.5,
        min_healthy_s: float = MIN_HEALTHY_S,
        crash_backoff_s: float = CRASH_BACKOFF_S,
        stop_grace_s: float = STOP_GRACE_S,
    ):
        self._start = start
        self._count = count
        self._name = name
        self._poll_s = poll_s
        self._min_healthy_s = min_healthy_s
        self._crash_backoff_s = crash_backoff_s
        self._stop_grace_s = stop_grace_s
        self._children: list[Child | None] = [None] * count
        # A plain flag, not a threading.Event: stop() may run in a signal handler.
        self._stopping = False

    def stop(self) -> None:
        """Makes :meth:`run` end its children and return; safe from another thread or a signal handler."""
        self._stopping = True

    def pids(self) -> list[int | None]:
        """Process ids of the current children (None for one not running)."""
        return [child.pid if child is not None else None for child in self._children]

    def _launch(self, i: int) -> tuple[Child, float]:
        child = self._start(i)
        log.info("%s started (pid %s)", self._name.format(i=i), child.pid)
        return child, time.monotonic()

    def run(self) -> Ending:
        """Supervises until the group ends; every child has ended when it returns."""
        started: list[float] = [0.0] * self._count
        restart_at: dict[int, float] = {}
        try:
            for i in range(self._count):
                if self._stopping:
                    break
                self._children[i], started[i] = self._launch(i)
            while not self._stopping:
                for i, child in enumerate(self._children):
                    if child is None:
                        continue
                    returncode = child.poll()
                    if returncode is None:
                        continue
                    result = outcome(returncode)
                    if result is Outcome.USER_ERROR:
                        reason = child.reason()
                        log.error("%s stopped with a user error (%s); stopping the others", self._name.format(i=i), reason)
                        return Ending(result, i, reason)
                    self._children[i] = None
                    if result is Outcome.FINISHED:
                        log.info("%s finished", self._name.format(i=i))
                        continue
                    soon = time.monotonic() - started[i] < self._min_healthy_s
                    delay = self._crash_backoff_s if soon else 0.0
                    log.warning("%s %s; restarting it%s", self._name.format(i=i), describe_exit(returncode),
                                f" in {delay:g} s" if delay else "")
                    restart_at[i] = time.monotonic() + delay
                for i, when in list(restart_at.items()):
                    if time.monotonic() >= when and not self._stopping:
                        del restart_at[i]
                        self._children[i], started[i] = self._launch(i)
                if not restart_at and all(child is None for child in self._children):
                    return Ending(Outcome.FINISHED)
                time.sleep(self._poll_s)
            return Ending(None)
        finally:
            self._end_children()

    def _end_children(self) -> None:
        """Terminates every running child, then kills what outlives the grace period."""
        running = [(i, child) for i, child in enumerate(self._children) if child is not None and child.poll() is None]
        for _, child in running:
            child.terminate()
        deadline = time.monotonic() + self._stop_grace_s
        for i, child in running:
            if child.wait(max(0.0, deadline - time.monotonic())) is None:
                log.warning("%s outlived SIGTERM by %g s; killing it", self._name.format(i=i), self._stop_grace_s)
                child.kill()
                child.wait()
