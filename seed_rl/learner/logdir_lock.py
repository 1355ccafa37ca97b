"""One run per logdir: an exclusive ``flock`` on ``LOGDIR/run.lock``, held while the learner lives.

Two learners writing one logdir append to one ``metrics.jsonl`` and write
checkpoints over each other. The lock is the kernel's: it goes with the
process, so a learner killed with SIGKILL never blocks its own resume. The
file keeps the holder's pid, so a refused start can name it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_FILE = "run.lock"


class LogdirInUse(Exception):
    """Another live process holds the logdir; the message names it and what to do."""


class LogdirLock:
    """Held from :meth:`acquire` until :meth:`release` or the end of the process."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, logdir: str | os.PathLike) -> LogdirLock:
        """Locks ``logdir`` (created if missing) for this process.

        Raises:
          LogdirInUse: another process holds it.
        """
        path = Path(logdir) / LOCK_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by child processes
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LogdirInUse(
                f"--logdir={logdir} is in use by another run (pid {holder}); stop that run, "
                f"or give this one another --logdir"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        """Lets another run use the logdir; safe to call twice."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
