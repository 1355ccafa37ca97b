"""Overlapping sequences stored once per step, compressed, in chunks that several sequences share.

R2D2 replays sequences that overlap: one of ``L`` steps starts every ``L -
overlap`` steps of an environment, so a step would be stored about ``L / (L -
overlap)`` times as independent copies. Here a sequence is a small
:class:`SequenceRecord` (the ids of the chunks that hold its steps, where in
them it starts, and its compressed initial recurrent state), and the steps
live in compressed chunks (:mod:`seed_rl.replay.codec`), each of the ``L -
overlap`` steps that one sequence adds.

A sequence whose ``(lineage, index)`` continues the previous sequence of its
lineage (:class:`~seed_rl.core.unroll.UnrollBatch`'s contract) references that
one's chunks for its first ``overlap`` steps and stores only its new steps;
any other (index -1, a gap in the indices, a predecessor already evicted, or
steps that do not match) is stored whole. Chunks are reference-counted: one is
freed when the last record that uses it is released (evicted from the replay).

Agent outputs are not stored: R2D2's training never reads them.
"""

from __future__ import annotations

import logging
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import torch

from seed_rl.core.unroll import Unroll, UnrollBatch
from seed_rl.replay import codec

log = logging.getLogger(__name__)

__all__ = ["ChunkStore", "SequenceRecord", "FORMAT"]

FORMAT = "seed_rl.chunked_replay.v1"  # what state_dict writes, checked by load_state_dict

# A batch with at least this many distinct chunks decompresses them in a thread pool.
_PARALLEL_CHUNKS = 16
# Per-step bytes up to which a whole field enters the continuity check (reward, done, action);
# larger fields (observations) contribute their first and last shared rows only.
_SMALL_FIELD_BYTES = 64


@dataclass(frozen=True, slots=True)
class SequenceRecord:
    """One stored sequence: rows ``offset : offset + length`` of its chunks laid end to end."""

    chunks: tuple[int, ...]
    offset: int
    length: int
    state: bytes = field(repr=False)  # the compressed initial_core_state
    state_layout: codec.Layout = field(repr=False)
    lineage: int
    index: int


class _Chunk:
    __slots__ = ("payload", "layout", "rows", "refs")

    def __init__(self, payload: bytes, layout: codec.Layout, rows: int):
        self.payload, self.layout, self.rows, self.refs = payload, layout, rows, 0


def _state_arrays(state: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    return {str(i): np.asarray(s)[None] for i, s in enumerate(state)}


def _overlap_signature(steps: dict[str, np.ndarray], start: int, stop: int) -> int:
    """A checksum of rows ``start:stop``: all of the small fields, the end rows of the others."""
    crc = 0
    for name in sorted(steps):
        rows = steps[name][start:stop]
        if rows[0].nbytes > _SMALL_FIELD_BYTES:
            rows = rows[[0, -1]]
        crc = zlib.crc32(name.encode(), crc)
        crc = zlib.crc32(np.ascontiguousarray(rows).tobytes(), crc)
    return crc


class ChunkStore:
    """Deduplicated, compressed storage of the sequences a replay holds.

    Args:
      overlap: steps that consecutive sequences of one lineage share (R2D2:
        ``sequence_length - sequence_period``); 0 stores every sequence whole.
      threads: decompression threads for large batches (0 or 1: decompress on the caller's
        thread). The default leaves half the cores to inference and training: none on 2 cores,
        where a pool only competes with them (tools/bench_replay_memory.py measures both ways).

    Not thread-safe: ReplayData guards it with a lock (its training thread adds, its prefetch worker samples).
    """

    def __init__(self, overlap: int, threads: int = min(4, (os.cpu_count() or 1) // 2)):
        if overlap < 0:
            raise ValueError(f"overlap must be >= 0, got {overlap}")
        self.overlap = overlap
        self._chunks: dict[int, _Chunk] = {}
        self._next_chunk = 0
        self._chunk_bytes = 0
        # The newest record of each lineage and the checksum of its last `overlap` steps:
        # what the lineage's next sequence may continue from.
        self._tails: dict[int, tuple[SequenceRecord, int]] = {}
        self._threads = threads
        self._pool: ThreadPoolExecutor | None = None
        self.continued = 0  # sequences that stored only their new steps
        self.whole = 0  # sequences stored whole
        self.mismatches = 0  # continuations refused because the shared steps differed

    # -- what is stored ---------------------------------------------------------------------------

    @property
    def live_chunks(self) -> int:
        return len(self._chunks)

    @property
    def chunk_bytes(self) -> int:
        """Compressed bytes of all live chunks."""
        return self._chunk_bytes

    def refs(self, chunk: int) -> int:
        """Live records that reference ``chunk`` (0 once it is freed)."""
        found = self._chunks.get(chunk)
        return 0 if found is None else found.refs

    # -- adding and releasing ---------------------------------------------------------------------

    def _new_chunk(self, arrays: dict[str, np.ndarray]) -> int:
        chunk = _Chunk(codec.pack(arrays), codec.layout_of(arrays), len(next(iter(arrays.values()))))
        key = self._next_chunk
        self._next_chunk += 1
        self._chunks[key] = chunk
        self._chunk_bytes += len(chunk.payload)
        return key

    def _continuation(self, unroll: Unroll, length: int) -> tuple[tuple[int, ...], int] | None:
        """The chunks and offset that hold ``unroll``'s first ``overlap`` steps, if its predecessor's do."""
        if unroll.lineage < 0 or unroll.index < 1 or not 0 < self.overlap < length:
            return None
        found = self._tails.get(unroll.lineage)
        if found is None:
            return None
        tail, signature = found
        if tail.index != unroll.index - 1 or tail.length != length:
            return None
        if any(c not in self._chunks for c in tail.chunks):
            return None
        if _overlap_signature(unroll.steps, 0, self.overlap) != signature:
            self.mismatches += 1
            if self.mismatches == 1:
                log.warning("a sequence of lineage %d does not start with the steps its predecessor ended with; "
                            "it is stored whole (reported once)", unroll.lineage)
            return None
        start = tail.offset + tail.length - self.overlap  # in the rows of the tail's chunks
        chunks = list(tail.chunks)
        while self._chunks[chunks[0]].rows <= start:
            start -= self._chunks[chunks.pop(0)].rows
        return tuple(chunks), start

    def add(self, unroll: Unroll) -> SequenceRecord:
        """Stores ``unroll``'s steps and initial state (not its agent outputs); the record holds one reference."""
        steps = unroll.steps
        length = len(next(iter(steps.values())))
        period = length - self.overlap if 0 < self.overlap < length else length
        continued = self._continuation(unroll, length)
        if continued is not None:
            kept, offset = continued
            chunks = (*kept, self._new_chunk({k: v[self.overlap:] for k, v in steps.items()}))
            self.continued += 1
        else:
            # Whole: cut so that chunk edges fall where the lineage's next sequences' new steps begin.
            edges = [0, *range(length % period or period, length + 1, period)]
            chunks = tuple(self._new_chunk({k: v[a:b] for k, v in steps.items()}) for a, b in zip(edges, edges[1:]))
            offset = 0
            self.whole += 1
        for c in chunks:
            self._chunks[c].refs += 1
        state = _state_arrays(unroll.initial_core_state)
        record = SequenceRecord(chunks, offset, length, codec.pack(state), codec.layout_of(state),
                                unroll.lineage, unroll.index)
        if unroll.lineage >= 0 and 0 < self.overlap < length:
            self._tails[unroll.lineage] = (record, _overlap_signature(steps, length - self.overlap, length))
        return record

    def release(self, records: Iterable[SequenceRecord]) -> None:
        """Drops each record's references; frees every chunk no live record uses any more."""
        for record in records:
            for c in record.chunks:
                chunk = self._chunks[c]
                chunk.refs -= 1
                if chunk.refs == 0:
                    del self._chunks[c]
                    self._chunk_bytes -= len(chunk.payload)
            tail = self._tails.get(record.lineage)
            if tail is not None and tail[0] is record:  # nothing can continue an evicted sequence
                del self._tails[record.lineage]

    # -- reading ----------------------------------------------------------------------------------

    def _run(self, task, keys: list[int]) -> None:
        """``task(key)`` for every key, in the decompression threads when there are many."""
        if self._threads > 1 and len(keys) >= _PARALLEL_CHUNKS:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="replay-decompress")
            list(self._pool.map(task, keys))
        else:
            for key in keys:
                task(key)

    def chunks_of(self, records: Sequence[SequenceRecord]) -> dict[int, "_Chunk"]:
        """The chunks ``records`` use: with them, :meth:`gather` reads nothing else of the store, so it can
        run outside a lock that guards the store while the records are evicted and their chunks freed."""
        return {c: self._chunks[c] for record in records for c in record.chunks}

    def gather(self, records: Sequence[SequenceRecord], chunks: dict[int, "_Chunk"] | None = None) -> UnrollBatch:
        """The records' sequences as one time-major CPU batch; each distinct chunk is decompressed once.

        Each chunk is decompressed and copied to every place the batch uses it
        by one task; tasks write disjoint rows, so they run in parallel threads.
        ``chunks``: taken earlier with :meth:`chunks_of` (default: the store's own).
        """
        chunks = self._chunks if chunks is None else chunks
        length = records[0].length
        if any(r.length != length for r in records):
            raise ValueError(f"cannot batch sequences of different lengths: {sorted({r.length for r in records})}")
        uses: dict[int, list[tuple[int, int, int, int]]] = {}  # chunk -> (sequence, first row, chunk row, rows)
        for b, record in enumerate(records):
            skip, filled = record.offset, 0
            for c in record.chunks:
                rows = chunks[c].rows
                take = min(rows - skip, length - filled)
                if take > 0:
                    uses.setdefault(c, []).append((b, filled, skip, take))
                    filled += take
                skip = max(0, skip - rows)
            if filled != length:
                raise AssertionError(f"{record} covers {filled} of its {length} steps")
        layout = chunks[records[0].chunks[0]].layout
        steps = {name: np.empty((length, len(records), *shape), dtype) for name, dtype, shape in layout}

        def fill(key: int) -> None:
            chunk = chunks[key]
            arrays = codec.unpack(chunk.payload, chunk.layout, chunk.rows)
            for b, first, row, take in uses[key]:
                for name, out in steps.items():
                    out[first : first + take, b] = arrays[name][row : row + take]

        self._run(fill, list(uses))
        states = [codec.unpack(r.state, r.state_layout, 1) for r in records]
        return UnrollBatch(
            steps={name: torch.from_numpy(out) for name, out in steps.items()},
            agent_outputs={},
            initial_core_state=tuple(
                torch.from_numpy(np.concatenate([s[name] for s in states])) for name, _, _ in records[0].state_layout
            ),
            lineage=torch.tensor([r.lineage for r in records], dtype=torch.int64),
            index=torch.tensor([r.index for r in records], dtype=torch.int64),
        )

    # -- checkpoints ------------------------------------------------------------------------------

    def state_dict(self, records: Sequence[SequenceRecord]) -> dict:
        """``records`` and the chunks they use, as a few flat tensors (``torch.save`` streams them to the file).

        A snapshot: later adds and releases do not change it.
        """
        keys = sorted({c for r in records for c in r.chunks})
        layouts: dict[codec.Layout, int] = {}
        chunk_layouts = [layouts.setdefault(self._chunks[k].layout, len(layouts)) for k in keys]
        state_layouts = [layouts.setdefault(r.state_layout, len(layouts)) for r in records]

        def blob(payloads: list[bytes]) -> tuple[torch.Tensor, torch.Tensor]:
            ends = np.cumsum([len(p) for p in payloads], dtype=np.int64)
            joined = np.concatenate([np.zeros(0, np.uint8), *(np.frombuffer(p, np.uint8) for p in payloads)])
            return torch.from_numpy(joined), torch.from_numpy(np.concatenate([[0], ends]).astype(np.int64))

        def int64(values) -> torch.Tensor:
            return torch.tensor(list(values), dtype=torch.int64)

        chunk_blob, chunk_ends = blob([self._chunks[k].payload for k in keys])
        state_blob, state_ends = blob([r.state for r in records])
        return {
            "format": FORMAT,
            "overlap": self.overlap,
            "layouts": [list(layout) for layout in layouts],  # small: names, dtypes and shapes
            "chunk_ids": int64(keys),
            "chunk_rows": int64(self._chunks[k].rows for k in keys),
            "chunk_layouts": int64(chunk_layouts),
            "chunk_bounds": chunk_ends,
            "chunk_blob": chunk_blob,
            "record_chunk_counts": int64(len(r.chunks) for r in records),
            "record_chunks": int64(c for r in records for c in r.chunks),
            "record_offsets": int64(r.offset for r in records),
            "record_lengths": int64(r.length for r in records),
            "record_lineages": int64(r.lineage for r in records),
            "record_indices": int64(r.index for r in records),
            "record_state_layouts": int64(state_layouts),
            "record_state_bounds": state_ends,
            "record_state_blob": state_blob,
        }

    def load_state_dict(self, state: dict) -> list[SequenceRecord]:
        """Replaces the contents with :meth:`state_dict`'s; returns the records, in order.

        Reference counts are rebuilt from the records. Lineages are not
        continued: the resumed run's sequences start new chunks (its actors
        reconnect, so their lineages are new anyway).
        """
        if state.get("format") != FORMAT:
            raise ValueError(f"replay contents in format {state.get('format')!r}, expected {FORMAT!r}")
        layouts = [codec.as_layout(spec) for spec in state["layouts"]]
        chunk_blob = state["chunk_blob"].numpy()
        bounds = state["chunk_bounds"].tolist()
        chunks = {
            key: _Chunk(chunk_blob[bounds[i] : bounds[i + 1]].tobytes(), layouts[layout], rows)
            for i, (key, rows, layout) in enumerate(
                zip(state["chunk_ids"].tolist(), state["chunk_rows"].tolist(), state["chunk_layouts"].tolist())
            )
        }
        state_blob = state["record_state_blob"].numpy()
        state_bounds = state["record_state_bounds"].tolist()
        ends = np.cumsum(state["record_chunk_counts"].numpy()).tolist()
        flat = state["record_chunks"].tolist()
        records = [
            SequenceRecord(tuple(flat[end - count : end]), offset, length,
                           state_blob[state_bounds[i] : state_bounds[i + 1]].tobytes(), layouts[layout], lineage, index)
            for i, (count, end, offset, length, lineage, index, layout) in enumerate(zip(
                state["record_chunk_counts"].tolist(), ends, state["record_offsets"].tolist(),
                state["record_lengths"].tolist(), state["record_lineages"].tolist(),
                state["record_indices"].tolist(), state["record_state_layouts"].tolist(),
            ))
        ]
        for record in records:
            for c in record.chunks:
                chunks[c].refs += 1
        self._chunks = {key: chunk for key, chunk in chunks.items() if chunk.refs > 0}
        self._chunk_bytes = sum(len(chunk.payload) for chunk in self._chunks.values())
        self._next_chunk = max(self._chunks, default=-1) + 1
        self._tails = {}
        return records
