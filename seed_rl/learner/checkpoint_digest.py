"""Content digests of a checkpoint's parts, so damage is found when it is loaded, not as NaNs later.

PyTorch's checkpoint archive does not check its records' CRCs when it reads
them: a zeroed range inside tensor data loads silently. Each checkpoint
therefore carries, under ``"digests"``, a BLAKE2b digest of every top-level
part (``agent``, ``data`` (R2D2's replay), ``episodes``, ...), computed over
the values as loaded (dtypes, shapes, bytes, keys and plain values), so a
loader can tell which part is damaged.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

DIGESTS_KEY = "digests"
# Parts that hold training data (R2D2's replay) rather than weights: --damaged_replay decides what their damage costs.
DATA_PARTS = ("data", "data_shards")


def _feed(h, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, np.ndarray):
        h.update(f"A{value.dtype.str}{value.shape}|".encode())
        h.update(np.ascontiguousarray(value).tobytes() if value.dtype != object else repr(value.tolist()).encode())
    elif isinstance(value, dict):
        h.update(f"D{len(value)}|".encode())
        for key, item in value.items():
            _feed(h, key)
            _feed(h, item)
    elif isinstance(value, (list, tuple)):
        h.update(f"{'L' if isinstance(value, list) else 'U'}{len(value)}|".encode())
        for item in value:
            _feed(h, item)
    else:
        h.update(f"{type(value).__name__}:{value!r}|".encode())


def digest(value: Any) -> str:
    """The BLAKE2b digest of ``value``'s contents (nested dicts, lists, tuples, tensors, arrays, plain values)."""
    h = hashlib.blake2b(digest_size=16)
    _feed(h, value)
    return h.hexdigest()


def with_digests(state: dict) -> dict:
    """``state`` with the digest of each of its parts under :data:`DIGESTS_KEY`."""
    return {**state, DIGESTS_KEY: {key: digest(value) for key, value in state.items() if key != DIGESTS_KEY}}


def damaged_parts(state: dict) -> list[str] | None:
    """The parts of a loaded ``state`` whose contents differ from their recorded digests (``state`` loses the
    digests); None for a checkpoint written before digests were kept."""
    recorded = state.pop(DIGESTS_KEY, None)
    if recorded is None:
        return None
    if not isinstance(recorded, dict):
        return [DIGESTS_KEY]
    missing = [key for key in state if key not in recorded]
    return missing + [key for key, value in recorded.items() if key not in state or digest(state[key]) != value]
