"""A sharded replay's checkpointed contents dealt onto another number of shards (a resume on another rank count).

Works on the checkpoint state of a replay shard: :meth:`PrioritizedReplay.state_dict`
with its ``items`` (the :class:`~seed_rl.replay.chunk_store.SequenceRecord` of
each slot) under ``sequences`` as :meth:`ChunkStore.state_dict` writes them,
which is what R2D2's ``ReplayData`` checkpoints. Nothing is decompressed: a
sequence moves as its record, its priority and the compressed chunks it
references (a chunk that sequences dealt to two shards share is copied into both).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from seed_rl.replay import codec
from seed_rl.replay.chunk_store import FORMAT

__all__ = ["reshard_replays", "select_sequences"]

_RECORD_FIELDS = ("record_offsets", "record_lengths", "record_lineages", "record_indices")


def _array(value) -> np.ndarray:
    return value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def _int64(values) -> torch.Tensor:
    return torch.from_numpy(np.asarray(values, dtype=np.int64).reshape(-1))


def _blob(pieces: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    ends = np.cumsum([len(p) for p in pieces], dtype=np.int64)
    joined = np.concatenate([np.zeros(0, np.uint8), *pieces])
    return torch.from_numpy(joined), torch.from_numpy(np.concatenate([[0], ends]).astype(np.int64))


class _Stored:
    """One :meth:`ChunkStore.state_dict` output, indexed for picking records out of it."""

    def __init__(self, state: dict):
        if state.get("format") != FORMAT:
            raise ValueError(f"replay contents in format {state.get('format')!r}, expected {FORMAT!r}")
        self.state = state
        self.layouts = [codec.as_layout(spec) for spec in state["layouts"]]
        self.chunk_row = {int(c): i for i, c in enumerate(_array(state["chunk_ids"]).tolist())}
        self.chunk_rows = _array(state["chunk_rows"])
        self.chunk_layouts = _array(state["chunk_layouts"])
        self.chunk_bounds = _array(state["chunk_bounds"])
        self.chunk_blob = _array(state["chunk_blob"])
        counts = _array(state["record_chunk_counts"])
        self.record_ends = np.cumsum(counts)
        self.record_counts = counts
        self.record_chunks = _array(state["record_chunks"])
        self.fields = {name: _array(state[name]) for name in _RECORD_FIELDS}
        self.state_layouts = _array(state["record_state_layouts"])
        self.state_bounds = _array(state["record_state_bounds"])
        self.state_blob = _array(state["record_state_blob"])

    def __len__(self) -> int:
        return len(self.record_counts)

    def chunks_of(self, record: int) -> list[int]:
        end = int(self.record_ends[record])
        return self.record_chunks[end - int(self.record_counts[record]) : end].tolist()


def select_sequences(stores: Sequence[dict], picks: Sequence[tuple[int, int]]) -> dict:
    """A :meth:`ChunkStore.state_dict` of the records ``picks`` (``(store, record)`` pairs, in that order).

    ``stores``: :meth:`ChunkStore.state_dict` outputs (e.g. of several shards).
    Each picked record keeps its offset, length, lineage, index and initial
    state, and brings the chunks it references; chunks get new ids (the stores'
    ids overlap), and a chunk several picked records share is stored once.
    """
    return _select([_Stored(s) for s in stores], picks)


def _select(parsed: Sequence[_Stored], picks: Sequence[tuple[int, int]]) -> dict:
    layouts: dict[codec.Layout, int] = {}
    new_chunk: dict[tuple[int, int], int] = {}  # (store, old chunk id) -> new id
    chunk_source: list[tuple[int, int]] = []  # new id -> (store, row in its chunk arrays)
    record_chunks: list[int] = []
    counts, states, state_layouts = [], [], []
    fields: dict[str, list[int]] = {name: [] for name in _RECORD_FIELDS}
    for k, i in picks:
        store = parsed[k]
        chunks = store.chunks_of(i)
        for c in chunks:
            if (k, c) not in new_chunk:
                new_chunk[(k, c)] = len(chunk_source)
                chunk_source.append((k, store.chunk_row[c]))
            record_chunks.append(new_chunk[(k, c)])
        counts.append(len(chunks))
        for name in _RECORD_FIELDS:
            fields[name].append(int(store.fields[name][i]))
        states.append(store.state_blob[store.state_bounds[i] : store.state_bounds[i + 1]])
        state_layouts.append(layouts.setdefault(store.layouts[int(store.state_layouts[i])], len(layouts)))
    chunk_layouts, rows, payloads = [], [], []
    for k, row in chunk_source:
        store = parsed[k]
        chunk_layouts.append(layouts.setdefault(store.layouts[int(store.chunk_layouts[row])], len(layouts)))
        rows.append(int(store.chunk_rows[row]))
        payloads.append(store.chunk_blob[store.chunk_bounds[row] : store.chunk_bounds[row + 1]])
    chunk_blob, chunk_bounds = _blob(payloads)
    state_blob, state_bounds = _blob(states)
    return {
        "format": FORMAT,
        "overlap": parsed[0].state["overlap"] if parsed else 0,
        "layouts": [list(layout) for layout in layouts],
        "chunk_ids": _int64(range(len(chunk_source))),
        "chunk_rows": _int64(rows),
        "chunk_layouts": _int64(chunk_layouts),
        "chunk_bounds": chunk_bounds,
        "chunk_blob": chunk_blob,
        "record_chunk_counts": _int64(counts),
        "record_chunks": _int64(record_chunks),
        **{name: _int64(values) for name, values in fields.items()},
        "record_state_layouts": _int64(state_layouts),
        "record_state_bounds": state_bounds,
        "record_state_blob": state_blob,
    }


def _derived_rng(source: dict, shard: int) -> dict:
    """A new generator's state for ``shard``, seeded from the generator state ``source`` and ``shard``."""
    rng = np.random.default_rng()
    rng.bit_generator.state = source
    return np.random.default_rng([shard, *rng.integers(2**32, size=4).tolist()]).bit_generator.state


def reshard_replays(replays: Sequence[dict], capacity: int, shards: int) -> list[dict]:
    """The sequences of the replay shard states ``replays``, dealt onto ``shards`` replay states of ``capacity``.

    ``replays``: :class:`PrioritizedReplay` states with ``sequences`` (a
    :meth:`ChunkStore.state_dict`) in place of ``items``, one per old shard, of
    any capacities. Returns as many states, each valid for
    ``PrioritizedReplay(capacity).load_state_dict`` once its ``sequences``
    are loaded into a :class:`ChunkStore` as ``items``.

    * Every sequence keeps its priority (the stored ``p^alpha``; saved with
      several exponents, they are converted to the first replay's, and
      ``load_state_dict`` converts them to the new replay's as usual).
    * Age: a sequence's age is how many insertions ago its shard took it
      (shards fill at about the same rate); ties go to the lower old shard.
    * Overflow: when there are more sequences than ``shards * capacity``, the
      newest ``shards * capacity`` are kept, as the FIFO replays would have.
    * Dealing: the kept sequences, ordered by old shard, lineage and index
      (so the consecutive sequences of an environment, which share chunks,
      stay together), are cut into ``shards`` contiguous runs whose sizes
      differ by at most one, the larger ones first.
    * Each new shard stores its sequences oldest first in slots ``0, 1, ...``
      with ids ``0, 1, ...``, so it evicts them oldest first once full.
    * Sampling rng: new shard ``j`` keeps the generator state of ``replays[j]``;
      a shard beyond them gets a new generator seeded from the state of
      ``replays[j % len(replays)]`` and ``j``.
    """
    capacity, shards = int(capacity), int(shards)
    if capacity < 1 or shards < 1 or not replays:
        raise ValueError(f"need replays, capacity >= 1 and shards >= 1 (got {len(replays)}, {capacity}, {shards})")
    alpha = float(replays[0]["priority_exponent"])
    stores, keys = [], []  # keys: (old shard, record, age, lineage, index) per stored sequence
    leaves = []
    for k, replay in enumerate(replays):
        store = replay["sequences"]
        n = len(_array(store["record_chunk_counts"]))
        inserted = int(replay["num_inserted"])
        if n != min(inserted, int(replay["capacity"])):
            raise ValueError(f"inconsistent replay shard {k}: {n} sequences for {inserted} inserted")
        priorities = np.asarray(_array(replay["priorities"]), dtype=np.float64)[:n]
        saved = float(replay["priority_exponent"])
        if saved != alpha:
            if saved == 0:
                raise ValueError("cannot convert priorities saved with priority_exponent 0")
            priorities = priorities ** (alpha / saved)
        ages = inserted - np.asarray(_array(replay["slot_ids"]), dtype=np.int64)[:n]
        stores.append(_Stored(store))
        leaves.append(priorities)
        lineages, indices = _array(store["record_lineages"]), _array(store["record_indices"])
        keys += [(k, i, int(ages[i]), int(lineages[i]), int(indices[i])) for i in range(n)]
    kept = sorted(keys, key=lambda s: (s[2], s[0]))[: shards * capacity]  # newest first
    kept.sort(key=lambda s: (s[0], s[3], s[4], s[1]))
    out = []
    for j, run in enumerate(np.array_split(np.arange(len(kept)), shards)):
        mine = sorted((kept[x] for x in run.tolist()), key=lambda s: (-s[2], s[0]))  # oldest first
        n = len(mine)
        priorities = np.zeros(capacity)
        priorities[:n] = [leaves[k][i] for k, i, *_ in mine]
        slot_ids = np.full(capacity, -1, dtype=np.int64)
        slot_ids[:n] = np.arange(n)
        rng = replays[j]["rng"] if j < len(replays) else _derived_rng(replays[j % len(replays)]["rng"], j)
        out.append({
            "capacity": capacity,
            "priority_exponent": alpha,
            "importance_sampling_exponent": replays[0]["importance_sampling_exponent"],
            "num_inserted": n,
            "position": n % capacity,
            "sequences": _select(stores, [(k, i) for k, i, *_ in mine]),
            "priorities": priorities,
            "slot_ids": slot_ids,
            "rng": rng,
        })
    return out
