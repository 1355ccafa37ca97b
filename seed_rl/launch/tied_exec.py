"""``python -m seed_rl.launch.tied_exec PARENT_PID SIGNAL COMMAND...``: run COMMAND, signalled when its parent dies.

A Ray actor that supervises a seed_rl process can be killed outright (``ray.kill``,
a lost node, the OOM killer) with no chance to stop its child. This shim asks
Linux to send SIGNAL to it when its parent thread exits (``PR_SET_PDEATHSIG``,
which survives ``exec``), checks that the parent did not die before that, and
replaces itself with COMMAND. Done in a fresh process rather than in
``preexec_fn``, which is unsafe in a multi-threaded parent such as a Ray worker.
It also gives COMMAND default handling of SIGINT and SIGTERM.
Where ``prctl`` does not exist (not Linux) COMMAND runs untied.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def tie_to_parent(parent_pid: int, signum: int) -> bool:
    """Asks for ``signum`` when the parent exits; False where the OS has no such request."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return False
    if prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(128 + signum)
    return True


def main(argv: list[str]) -> None:
    if len(argv) < 4:
        sys.exit("usage: python -m seed_rl.launch.tied_exec PARENT_PID SIGNAL COMMAND...")
    parent_pid, signum, command = int(argv[1]), int(argv[2]), argv[3:]
    tie_to_parent(parent_pid, signum)
    # A Ray worker's threads block SIGINT and ignore it; both would carry over
    # to COMMAND, which could then never be asked to stop.
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, signal.SIG_DFL)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv)
