"""Atomic checkpoints: write to a temporary file, fsync, then rename over.

A learner killed mid-write leaves at worst a stray ``.tmp`` file, never a
truncated checkpoint, so the newest ``ckpt-*.pt`` is always loadable.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

import torch

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
