"""Reading checkpoints safely: no code runs, damage is found, and a damaged newest one falls back to an older one.

Checkpoints are read with ``torch.load(weights_only=True)``: only tensors,
plain containers and values, and numpy arrays (which older checkpoints hold)
are rebuilt, so a file whose pickle names any other callable is refused
(:class:`UnsafeCheckpoint`) instead of running it. Each part's digest
(``checkpoint_digest.py``) is checked against what was loaded.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from seed_rl.exits import first_line
from seed_rl.learner.checkpoint import checkpoint_dir, list_checkpoints
from seed_rl.learner.checkpoint_digest import DATA_PARTS, damaged_parts

log = logging.getLogger(__name__)

DamagedReplay = Literal["previous", "empty"]
DAMAGED_SUFFIX = ".damaged"


class CheckpointReadError(ValueError):
    """A checkpoint that cannot be used; the message is one line."""


class DamagedCheckpoint(CheckpointReadError):
    """Truncated, corrupted or empty, or its contents differ from their digests."""


class UnsafeCheckpoint(CheckpointReadError):
    """Its pickle names a callable a seed_rl checkpoint never holds: loading it could run code."""


class NoReadableCheckpoint(CheckpointReadError):
    """Checkpoints exist, and none of them can be read."""


def _numpy_globals() -> list:
    """What pickled numpy arrays need (checkpoints written before every value was a tensor hold some)."""
    core = getattr(np, "_core", None) or np.core
    allowed = [np.ndarray, np.dtype, core.multiarray._reconstruct]
    allowed += [getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType")]
    return allowed


_ALLOWED_GLOBALS = _numpy_globals()
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


@dataclass
class Loaded:
    path: Path
    state: dict
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # newer checkpoints that could not be read
    replay_dropped: bool = False  # its replay was damaged and left out (--damaged_replay=empty)


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, list[str] | None]:
    """The state in checkpoint ``path`` (tensors on the CPU) and its damaged parts (None: no digests to check).

    Raises:
      DamagedCheckpoint: the file cannot be read as a checkpoint.
      UnsafeCheckpoint: it would need code a seed_rl checkpoint never holds.
    """
    try:
        with torch.serialization.safe_globals(_ALLOWED_GLOBALS):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        named = _GLOBAL.search(str(e))
        if named is not None:
            raise UnsafeCheckpoint(
                f"{path} was not loaded: it names {named.group(1)}, which no seed_rl checkpoint holds, and loading "
                f"it could run code. Load only checkpoints written by seed_rl, or move it out of the logdir"
            ) from None
        # torch's message here is advice about weights_only, not about the file.
        raise DamagedCheckpoint(f"{path} is damaged or not a checkpoint (its contents cannot be unpickled)") from None
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - truncated, zeroed, an empty file: torch raises many kinds
        raise DamagedCheckpoint(f"{path} is damaged or not a checkpoint: {first_line(e) or type(e).__name__}") from None
    if not isinstance(state, dict):
        raise DamagedCheckpoint(f"{path} is not a seed_rl checkpoint (it holds a {type(state).__name__})")
    return state, damaged_parts(state)


def _usable(path: Path, damaged_replay: DamagedReplay) -> tuple[dict, bool]:
    """The state of ``path`` as a run may use it, and whether its damaged replay was left out."""
    state, damaged = read_checkpoint(path)
    if not damaged:
        return state, False
    if damaged_replay == "empty" and all(part in DATA_PARTS for part in damaged):
        for part in DATA_PARTS:
            state.pop(part, None)
        return state, True
    raise DamagedCheckpoint(f"{path} is damaged: its {', '.join(damaged)} differ from their digests")


def newest_readable(logdir: str | os.PathLike, damaged_replay: DamagedReplay = "previous",
                    move_aside: bool = False) -> Loaded | None:
    """The newest checkpoint in ``logdir`` that can be read; None when there is none.

    Newer ones that cannot be read are skipped (and, with ``move_aside``, renamed
    to ``<name>.damaged``, never deleted). A checkpoint whose only damage is its
    replay is used without it where ``damaged_replay`` is ``"empty"``.

    Raises:
      UnsafeCheckpoint: the newest checkpoint that is not damaged would run code.
      NoReadableCheckpoint: checkpoints exist and none can be read (nothing is moved).
    """
    skipped: list[tuple[Path, str]] = []
    for path in reversed(list_checkpoints(logdir)):
        try:
            state, replay_dropped = _usable(path, damaged_replay)
        except DamagedCheckpoint as e:
            skipped.append((path, str(e)))
            continue
        for bad, reason in skipped:
            if move_aside:
                aside = bad.with_name(bad.name + DAMAGED_SUFFIX)
                os.replace(bad, aside)
                log.warning("%s; moved it to %s and resumed from %s", reason, aside.name, path.name)
            else:
                log.warning("%s; using %s instead", reason, path.name)
        if replay_dropped:
            log.warning("the replay in %s is damaged: keeping its weights and starting the replay empty "
                        "(--damaged_replay=empty)", path)
        return Loaded(path, state, skipped, replay_dropped)
    if skipped:
        reasons = "; ".join(reason for _, reason in skipped)
        raise NoReadableCheckpoint(
            f"none of the checkpoints in {checkpoint_dir(logdir)} can be read ({reasons}); move them out of that "
            f"directory to start this run afresh, or pass another --logdir"
        )
    return None


def load_checkpoint(path: str | os.PathLike) -> dict:
    """The state in checkpoint ``path``, checked against its digests (tensors on the CPU).

    Raises:
      DamagedCheckpoint, UnsafeCheckpoint: see :func:`read_checkpoint`.
    """
    state, damaged = read_checkpoint(path)
    if damaged:
        raise DamagedCheckpoint(f"{path} is damaged: its {', '.join(damaged)} differ from their digests")
    return state
