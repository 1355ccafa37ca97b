"""Named arrays packed into one compressed blob, and back.

The replay keeps each chunk of steps (and each sequence's initial recurrent
state) as one zstd frame of its arrays' bytes laid end to end, with a shared
:data:`Layout` that says how to cut them apart again. zstd (level 3) was chosen
on real Pong frames: about 160x smaller per 40-frame chunk at ~2 GB/s both
ways, where lz4 and blosc2-lz4 reach about 75x at similar speed and blosc2-zstd
pays 4x slower compression for less (``tools/bench_replay_memory.py`` measures
all three side by side). Its calls release the GIL, so chunks decompress in
parallel threads.
"""

from __future__ import annotations

import threading

import numpy as np
import zstandard

__all__ = ["LEVEL", "Layout", "as_layout", "layout_of", "pack", "unpack"]

LEVEL = 3  # zstd's default: on Pong chunks level 1 loses ~4% of the ratio, level 9 compresses 5x slower

# (name, dtype string, shape of one row) per array, in blob order. Every
# array of a blob has the same number of rows (a chunk's steps; 1 for a state).
Layout = tuple[tuple[str, str, tuple[int, ...]], ...]

_local = threading.local()
_interned: dict[Layout, Layout] = {}


def _compressor() -> zstandard.ZstdCompressor:
    # zstandard's (de)compressor objects must not be shared between threads.
    if not hasattr(_local, "compressor"):
        _local.compressor = zstandard.ZstdCompressor(level=LEVEL)
    return _local.compressor


def _decompressor() -> zstandard.ZstdDecompressor:
    if not hasattr(_local, "decompressor"):
        _local.decompressor = zstandard.ZstdDecompressor()
    return _local.decompressor


def as_layout(spec) -> Layout:
    """``spec`` (e.g. a layout read back from a checkpoint, lists for tuples) as a shared :data:`Layout`."""
    layout = tuple((str(name), str(dtype), tuple(int(n) for n in shape)) for name, dtype, shape in spec)
    return _interned.setdefault(layout, layout)


def layout_of(arrays: dict[str, np.ndarray]) -> Layout:
    """The layout of ``arrays`` (each ``[rows, ...]``)."""
    return as_layout((name, a.dtype.str, a.shape[1:]) for name, a in arrays.items())


def pack(arrays: dict[str, np.ndarray]) -> bytes:
    """The arrays' bytes, in order, as one zstd frame."""
    frame = _compressor().compress(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays.values()))
    # zstandard returns a bytes object that still holds its worst-case allocation (the input's
    # size): measured on Pong chunks, ~284 KB of RSS per 1.7 KB frame. An exact-size copy frees it.
    return bytes(memoryview(frame))


def unpack(blob: bytes, layout: Layout, rows: int) -> dict[str, np.ndarray]:
    """:func:`pack` undone: read-only arrays ``[rows, ...]`` that share one decompressed buffer."""
    raw = _decompressor().decompress(blob)
    arrays, offset = {}, 0
    for name, dtype, shape in layout:
        dtype = np.dtype(dtype)
        count = rows * int(np.prod(shape, dtype=np.int64))
        arrays[name] = np.frombuffer(raw, dtype, count, offset).reshape((rows, *shape))
        offset += count * dtype.itemsize
    if offset != len(raw):
        raise ValueError(f"a replay blob holds {len(raw)} bytes where its layout describes {offset}")
    return arrays
