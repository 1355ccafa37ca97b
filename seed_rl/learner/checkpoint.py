"""Atomic checkpoints: write to a temporary file, fsync, then rename over.

A learner killed mid-write leaves at worst a stray ``.tmp`` file (removed when
the next run starts), never a truncated ``ckpt-*.pt``. Each checkpoint carries
its parts' digests (``checkpoint_digest.py``), so damage done to it later (a
disk, a copy cut short) is found when it is read (``checkpoint_loading.py``).
A write that fails (a full disk, a read-only directory) leaves the previous
checkpoints as they were.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Any, BinaryIO, Callable

import torch

from seed_rl.learner.checkpoint_digest import with_digests

log = logging.getLogger(__name__)

_NAME = re.compile(r"^ckpt-(\d+)\.pt$")


def checkpoint_dir(logdir: str | os.PathLike) -> Path:
    return Path(logdir) / "checkpoints"


class _ErrorKeepingFile:
    """A file whose failed writes are remembered: ``torch.save`` reports a full disk as a bare
    "unexpected pos" RuntimeError, and the OSError behind it says why."""

    def __init__(self, f: BinaryIO):
        self._f = f
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self._f.write(data)
        except OSError as e:
            self.error = e
            raise

    def __getattr__(self, name: str):
        return getattr(self._f, name)


def write_atomically(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Calls ``write`` on a temporary file beside ``path``, fsyncs it and renames it over ``path``.

    On failure the temporary file is removed and the error raised (the OSError of a failed write, where
    ``write`` reported it as something else).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    kept = None
    try:
        with os.fdopen(fd, "wb") as f:
            kept = _ErrorKeepingFile(f)
            write(kept)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if kept is not None and kept.error is not None and kept.error is not e:
            raise kept.error from None
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_checkpoint(logdir: str | os.PathLike, state: dict, frames: int, keep: int = 3) -> Path:
    """Saves ``state`` (with its parts' digests) as ``checkpoints/ckpt-<frames>.pt`` atomically; keeps the newest
    ``keep``, removing older ones only once the new one is written."""
    directory = checkpoint_dir(logdir)
    path = directory / f"ckpt-{frames:013d}.pt"
    state = with_digests(state)
    write_atomically(path, lambda f: torch.save(state, f))
    for old in list_checkpoints(logdir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def nonfinite_tensors(state: Any, prefix: str = "") -> list[str]:
    """Dotted names of the floating-point tensors in a nested ``state`` that hold NaN or inf."""
    if isinstance(state, torch.Tensor):
        finite = not state.is_floating_point() or bool(torch.isfinite(state).all())
        return [] if finite else [prefix or "tensor"]
    if isinstance(state, dict):
        items = state.items()
    elif isinstance(state, (list, tuple)):
        items = enumerate(state)
    else:
        return []
    return [name for key, value in items for name in nonfinite_tensors(value, f"{prefix}.{key}" if prefix else str(key))]


def list_checkpoints(logdir: str | os.PathLike) -> list[Path]:
    """Checkpoints in ``logdir``, oldest first."""
    directory = checkpoint_dir(logdir)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(logdir: str | os.PathLike) -> Path | None:
    checkpoints = list_checkpoints(logdir)
    return checkpoints[-1] if checkpoints else None


def remove_unfinished_writes(logdir: str | os.PathLike) -> list[Path]:
    """Deletes the temporary files of writes that a killed process left (call while holding the logdir)."""
    directory = checkpoint_dir(logdir)
    if not directory.is_dir():
        return []
    leftovers = [p for p in directory.iterdir() if p.name.startswith(".ckpt-") and p.name.endswith(".tmp")]
    for path in leftovers:
        path.unlink(missing_ok=True)
        log.info("removed %s, left by an interrupted checkpoint write", path.name)
    return leftovers


class CheckpointWriteError(OSError):
    """The final checkpoint could not be written; the message is one line."""


def detached_copy(value: Any) -> Any:
    """``value`` with every tensor (inside dicts, lists and tuples) cloned: a snapshot training cannot change."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: detached_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(detached_copy(v) for v in value)
    return value


class CheckpointWriter:
    """Writes checkpoints on a background thread, so a large one (R2D2's replay) stays off the training path.

    The caller hands over a snapshot: a state that training will not change
    while it is written (cloned weights; the replay's ``state_dict`` already is
    one). One write runs at a time; a save asked for while one runs is skipped
    (the next interval writes a newer one), unless ``wait`` is set.
    """

    def __init__(self, logdir: str | os.PathLike, keep: int = 3):
        self.logdir = logdir
        self.keep = keep
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.written: list[Path] = []

    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def save(self, state: dict, frames: int, wait: bool = False) -> bool:
        """Starts writing ``state``; returns False if a write was still running (and ``wait`` is off).

        A write that fails logs one warning and leaves the previous checkpoints; with ``wait`` its
        :class:`CheckpointWriteError` is raised here.
        """
        if self.busy():
            if not wait:
                log.warning("the previous checkpoint is still being written; skipping this one")
                return False
            self._thread.join()
        self._thread = threading.Thread(target=self._write, args=(state, frames), name="checkpoint-writer")
        self._thread.start()
        if wait:
            self._thread.join()
            error, self._error = self._error, None
            if error is not None:
                raise error
        return True

    def _write(self, state: dict, frames: int) -> None:
        self._error = None
        try:
            path = save_checkpoint(self.logdir, state, frames, self.keep)
        except Exception as e:  # noqa: BLE001 - a full disk, a read-only directory, ...: training goes on
            previous = list_checkpoints(self.logdir)
            kept = f"the newest intact checkpoint is {previous[-1].name}" if previous else "no checkpoint is written yet"
            self._error = CheckpointWriteError(
                f"could not write the checkpoint at {frames} frames to {checkpoint_dir(self.logdir)}: "
                f"{e.strerror if isinstance(e, OSError) and e.strerror else e}; {kept}"
            )
            log.warning("%s; training goes on and the next interval tries again", self._error)
            return
        self.written.append(path)
        log.info("checkpoint %s", path)

    def wait(self) -> None:
        """Waits for the running write (whose failure, if any, was logged)."""
        if self._thread is not None:
            self._thread.join()
