"""What runs inside the Ray actors: one seed_rl process each, supervised and tied to the actor's life.

The learner and every actor are ordinary ``python -m seed_rl.train --role=learner``
and ``python -m seed_rl.actor`` processes, started with exactly the flags the
launcher passes (so new flags of those commands need no change here). A Ray
actor holds each one as a child process:

- the child is signalled when the Ray actor dies (see ``tied_exec``), so a
  killed Ray actor never leaves an orphan stepping environments;
- its stderr is echoed (Ray forwards it to the launcher's console) and its last
  lines are kept, so a failure can be reported in one line;
- an actor child that crashes or is killed takes its Ray actor down with it,
  so Ray restarts the pair (``max_restarts=-1``) and the new actor's
  environments rejoin the learner; an actor refused for its configuration
  raises instead, which Ray does not retry.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from seed_rl import exits

# seed_rl's commands end a user error (wrong env, refused by the learner) with
# one "error: ..." line and exits.USER_ERROR; anything else is a crash worth
# restarting (seed_rl.exits).
USER_ERROR_PREFIX = "error:"
# A child that crashes sooner than this after starting waits before its Ray
# actor exits, so a crash loop does not spin.
MIN_HEALTHY_S = 10.0
CRASH_BACKOFF_S = 5.0
TAIL_LINES = 40


class ActorRefused(RuntimeError):
    """A seed_rl actor stopped with a configuration error; restarting it cannot help."""


@dataclass
class ChildExit:
    returncode: int
    tail: list[str]

    def reason(self) -> str:
        """The child's own error line when it printed one, else how it ended."""
        for line in reversed(self.tail):
            if line.startswith(USER_ERROR_PREFIX):
                return line[len(USER_ERROR_PREFIX):].strip()
        how = f"signal {-self.returncode}" if self.returncode < 0 else f"exit code {self.returncode}"
        last = next((line.strip() for line in reversed(self.tail) if line.strip()), "")
        return f"{how}" + (f"; last output: {last}" if last else "")

    def is_user_error(self) -> bool:
        return exits.is_user_error(self.returncode)


class SupervisedProcess:
    """One seed_rl command as a child of this (Ray actor) process."""

    def __init__(self, extra_env: dict[str, str], cwd: str | None, label: str):
        self._env = {**os.environ, **extra_env}
        # The launcher's directory when it exists on this node (a local cluster),
        # so relative paths such as --logdir mean what the user meant.
        self._cwd = cwd if cwd and os.path.isdir(cwd) else None
        self._label = label
        self._child: subprocess.Popen | None = None
        self._stopping = threading.Event()

    def node_ip(self) -> str:
        import ray

        return ray.util.get_node_ip_address()

    def child_pid(self) -> int | None:
        return self._child.pid if self._child else None

    def stop(self, signum: int = signal.SIGINT) -> None:
        """Asks the child to stop (SIGINT: the learner writes a final checkpoint)."""
        self._stopping.set()
        if self._child and self._child.poll() is None:
            print(f"[{self._label}] sending {signal.Signals(signum).name} to process {self._child.pid}", file=sys.stderr, flush=True)
            self._child.send_signal(signum)

    def run_child(self, module_argv: list[str], death_signal: int) -> ChildExit:
        """Runs ``python -m <module_argv>`` with this node's Python until it exits; it gets ``death_signal`` if we die."""
        shim = [sys.executable, "-m", "seed_rl.launch.tied_exec", str(os.getpid()), str(int(death_signal))]
        self._child = subprocess.Popen(
            shim + [sys.executable, "-m", *module_argv],
            cwd=self._cwd,
            env=self._env,
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            # Its own session: a Ctrl-C at the launcher's terminal reaches the
            # launcher only, which then stops the learner first.
            start_new_session=True,
        )
        if self._stopping.is_set():
            self._child.send_signal(signal.SIGINT)
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        assert self._child.stderr is not None
        for line in self._child.stderr:
            sys.stderr.write(f"[{self._label}] {line}")
            sys.stderr.flush()
            tail.append(line.rstrip("\n"))
        return ChildExit(self._child.wait(), list(tail))


class LearnerProcess(SupervisedProcess):
    """Ray actor body of the learner: ``python -m seed_rl.train --role=learner ...``."""

    def run(self, module_argv: list[str]) -> ChildExit:
        # SIGTERM on our death: train.py handles it like Ctrl-C (final checkpoint).
        return self.run_child(module_argv, signal.SIGTERM)


class ActorProcess(SupervisedProcess):
    """Ray actor body of one seed_rl actor: ``python -m seed_rl.actor ...``."""

    def run(self, module_argv: list[str]) -> ChildExit:
        started = time.monotonic()
        result = self.run_child(module_argv, signal.SIGKILL)
        if self._stopping.is_set():
            return result
        if result.is_user_error():
            raise ActorRefused(f"{self._label}: {result.reason()}")
        print(f"[{self._label}] exited ({result.reason()}); leaving Ray to restart this actor", file=sys.stderr, flush=True)
        if time.monotonic() - started < MIN_HEALTHY_S:
            time.sleep(CRASH_BACKOFF_S)
        os._exit(1)  # an unexpected death: Ray restarts the actor and retries run()
