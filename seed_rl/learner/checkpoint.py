"""Atomic checkpoints: write to a temporary file, fsync, then rename over.

A learner killed mid-write leaves at worst a stray ``.tmp`` file, never a
truncated checkpoint, so the newest ``ckpt-*.pt`` is always loadable.
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

log = logging.getLogger(__name__)

_NAME = re.compile(r"^ckpt-(\d+)\.pt$")


def checkpoint_dir(logdir: str | os.PathLike) -> Path:
    return Path(logdir) / "checkpoints"


def write_atomically(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Calls ``write`` on a temporary file beside ``path``, fsyncs it and renames it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_checkpoint(logdir: str | os.PathLike, state: dict, frames: int, keep: int = 3) -> Path:
    """Saves ``state`` as ``checkpoints/ckpt-<frames>.pt`` atomically; keeps the newest ``keep``."""
    directory = checkpoint_dir(logdir)
    path = directory / f"ckpt-{frames:013d}.pt"
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


def load_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> dict:
    return torch.load(path, map_location=device, weights_only=False)


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
        """Starts writing ``state``; returns False if a write was still running (and ``wait`` is off)."""
        if self.busy():
            if not wait:
                log.warning("the previous checkpoint is still being written; skipping this one")
                return False
            self._thread.join()
        self._thread = threading.Thread(target=self._write, args=(state, frames), name="checkpoint-writer")
        self._thread.start()
        if wait:
            self.wait()
        return True

    def _write(self, state: dict, frames: int) -> None:
        try:
            path = save_checkpoint(self.logdir, state, frames, self.keep)
            self.written.append(path)
            log.info("checkpoint %s", path)
        except BaseException as e:  # noqa: BLE001 - reported by wait(), logged now
            log.error("writing the checkpoint at %d frames failed: %s", frames, e)
            self._error = e

    def wait(self) -> None:
        """Waits for the running write; raises its error, if it failed."""
        if self._thread is not None:
            self._thread.join()
        error, self._error = self._error, None
        if error is not None:
            raise error
