"""What runs inside the Ray actors: one seed_rl process each, tied to the actor's life.

The learner and every actor are ordinary ``python -m seed_rl.train --role=learner``
and ``python -m seed_rl.actor`` processes, started with exactly the flags the
launcher passes (so new flags of those commands need no change here). A Ray
actor holds each one as a child process:

- the child is signalled when the Ray actor dies (see ``tied_exec``), so a
  killed Ray actor never leaves an orphan stepping environments;
- its stderr is echoed (Ray forwards it to the launcher's console) and its last
  lines are kept, so a failure can be reported in one line;
- an actor's child runs under :class:`~seed_rl.launch.supervisor.Supervisor`,
  like every other launcher's actors: a crash restarts it in place and its
  environments rejoin the learner; a user error raises :class:`ActorUserError`,
  which Ray does not retry. Ray itself restarts a Ray actor that dies
  (``max_restarts=-1``).
"""

from __future__ import annotations

import glob
import logging
import os
import signal
import subprocess
import sys
import threading

from seed_rl.launch.learners import TORCHRUN_MODULE
from seed_rl.launch.supervisor import CommandChild, Ending, Supervisor


class ActorUserError(RuntimeError):
    """A seed_rl actor process exited with :data:`seed_rl.exits.USER_ERROR`; restarting it cannot help.

    Not :class:`seed_rl.transport.errors.Refused`: that is raised inside an actor when the learner turns it
    away, and it is one of several causes (a bad flag, an unknown environment, ...) that end the actor's
    process with this exit code, all that the Ray actor sees of its child. Raised, it ends the Ray task
    without a retry and carries the child's own error line to the launcher.
    """


class _RayHostedProcess:
    """Starts seed_rl commands as children of this (Ray actor) process."""

    def __init__(self, extra_env: dict[str, str], cwd: str | None, label: str):
        self._env = {**os.environ, **extra_env}
        # The launcher's directory when it exists on this node (a local cluster),
        # so relative paths such as --logdir mean what the user meant.
        self._cwd = cwd if cwd and os.path.isdir(cwd) else None
        self._label = label
        logging.basicConfig(level=logging.INFO, format=f"[{label}] %(message)s")

    def node_ip(self) -> str:
        import ray

        return ray.util.get_node_ip_address()

    def _start(self, module_argv: list[str], death_signal: int) -> CommandChild:
        """``python -m <module_argv>`` with this node's Python; it gets ``death_signal`` if we die."""
        shim = [sys.executable, "-m", "seed_rl.launch.tied_exec", str(os.getpid()), str(int(death_signal))]
        return CommandChild(
            shim + [sys.executable, "-m", *module_argv],
            label=self._label,
            cwd=self._cwd,
            env=self._env,
            stdin=subprocess.DEVNULL,
            # Its own session: a Ctrl-C at the launcher's terminal reaches the
            # launcher only, which then stops the learner first.
            start_new_session=True,
        )


def child_pids(pid: int) -> list[int]:
    """The direct children of process ``pid`` (Linux ``/proc``); empty where that cannot be read."""
    pids = []
    for path in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            with open(path) as f:
                pids += [int(token) for token in f.read().split()]
        except OSError:  # the thread or process ended meanwhile
            pass
    return pids


class LearnerProcess(_RayHostedProcess):
    """Ray actor body of the learner: ``python -m seed_rl.train --role=learner ...``, run once, never restarted.

    A rerun of the launcher resumes from its last checkpoint instead. With
    ``--learners`` > 1 the child is torchrun, and ``stop`` signals its ranks, not
    torchrun: ranks that stop cleanly end torchrun with exit code 0, whereas a
    signalled torchrun forwards the signal and then exits 1 however they ended.
    """

    def __init__(self, extra_env: dict[str, str], cwd: str | None, label: str):
        super().__init__(extra_env, cwd, label)
        self._child: CommandChild | None = None
        self._torchrun = False
        self._stopping = threading.Event()

    def child_pid(self) -> int | None:
        return self._child.pid if self._child else None

    def stop(self) -> None:
        """SIGINT: the learner writes a final checkpoint, however long that takes."""
        self._stopping.set()
        if self._child is not None:
            self._interrupt(self._child)

    def _interrupt(self, child: CommandChild) -> None:
        ranks = child_pids(child.pid) if self._torchrun and child.pid else []
        for pid in ranks:
            try:
                os.kill(pid, signal.SIGINT)
            except ProcessLookupError:
                pass
        if not ranks:  # one learner, or torchrun has not started its ranks yet: it forwards the signal
            child.send_signal(signal.SIGINT)

    def run(self, module_argv: list[str]) -> tuple[int, str]:
        """(exit code, one line on how it ended)."""
        self._torchrun = module_argv[0] == TORCHRUN_MODULE
        # SIGTERM on our death: train.py handles it like Ctrl-C (final checkpoint); torchrun forwards it.
        self._child = self._start(module_argv, signal.SIGTERM)
        if self._stopping.is_set():
            self._interrupt(self._child)
        returncode = self._child.wait()
        return returncode, self._child.reason()


class ActorProcess(_RayHostedProcess):
    """Ray actor body of one seed_rl actor: ``python -m seed_rl.actor ...`` under a one-child Supervisor."""

    def __init__(self, extra_env: dict[str, str], cwd: str | None, label: str):
        super().__init__(extra_env, cwd, label)
        self._supervisor: Supervisor | None = None
        self._lock = threading.Lock()
        self._stopping = False

    def child_pid(self) -> int | None:
        return self._supervisor.pids()[0] if self._supervisor else None

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            if self._supervisor is not None:
                self._supervisor.stop()

    def run(self, module_argv: list[str]) -> Ending:
        """Returns when the actor finishes or is stopped; raises ActorUserError on a user error."""
        with self._lock:
            # SIGKILL on our death: an actor holds nothing worth saving.
            self._supervisor = Supervisor(
                lambda i: self._start(module_argv, signal.SIGKILL), 1, name="seed_rl actor process"
            )
            if self._stopping:
                self._supervisor.stop()
        ending = self._supervisor.run()
        if ending.exit_code:
            raise ActorUserError(f"{self._label}: {ending.reason}")
        return ending
