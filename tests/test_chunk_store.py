"""R2D2's compressed, deduplicated replay seen from outside: what is sampled is what was inserted.

Sequences come from a real :class:`TrajectoryStore` fed the way the inference
engine feeds it (uint8 frames, small step fields, a recurrent state whose first
element is uint8 frames as learner-side frame stacking will make it), go
through :class:`ReplayData` into the chunk store, and come back from
``sample()``; each sampled sequence is matched to the inserted one by its
``(lineage, index)``.
"""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
import torch

from seed_rl.agents.r2d2.replay_data import ReplayData
from seed_rl.core.unroll import Unroll, UnrollBatch, UnrollShape
from seed_rl.learner.trajectories import TrajectoryStore
from seed_rl.replay import chunk_store
from seed_rl.replay.chunk_store import ChunkStore
from seed_rl.replay.prioritized import PrioritizedReplay

CPU = torch.device("cpu")
LENGTH, OVERLAP = 9, 6  # unrolls of 10 steps, one every 4: R2D2's 121 / 40 in small
FRAME = (1, 6, 6)


class Envs:
    """Environments stepping into a TrajectoryStore: random frames, so any misplaced step shows."""

    def __init__(self, seed: int = 0, frame: tuple[int, ...] = FRAME, noise: bool = True):
        self.store = TrajectoryStore(UnrollShape(LENGTH + 1, OVERLAP))
        self.rng = np.random.default_rng(seed)
        self.frame = frame
        self.noise = noise
        self.t = 0

    def _frames(self, n: int, shape: tuple[int, ...]) -> torch.Tensor:
        if self.noise:
            return torch.from_numpy(self.rng.integers(0, 256, (n, *shape), np.uint8))
        frames = np.zeros((n, *shape), np.uint8)  # a dark screen with a moving bright square, as in Atari
        frames[..., (self.t // 3) % (shape[-2] - 8):][..., :8, :8] = 200
        return torch.from_numpy(frames)

    def step(self, slots) -> UnrollBatch | None:
        n, rng = len(slots), self.rng
        self.t += 1
        step = {
            "observation": self._frames(n, self.frame),
            "reward": torch.from_numpy(rng.normal(size=n).astype(np.float32)),
            "done": torch.from_numpy(rng.random(n) < 0.1),
            "truncated": torch.from_numpy(rng.random(n) < 0.05),
            "action": torch.from_numpy(rng.integers(0, 6, n)),
        }
        outputs = {"q": torch.from_numpy(rng.normal(size=(n, 6)).astype(np.float32))}
        state = (self._frames(n, (3, *self.frame)), torch.from_numpy(rng.normal(size=(n, 5)).astype(np.float32)),
                 torch.from_numpy(rng.normal(size=(n, 5)).astype(np.float32)), torch.from_numpy(rng.integers(0, 6, n)))
        return self.store.write(np.asarray(slots, np.int64), step, outputs, state, capacity=8)


def _replay_data(capacity: int, **kwargs) -> ReplayData:
    return ReplayData(PrioritizedReplay(capacity, seed=1), batch_size=16, replay_ratio=1.0, min_size=1,
                      trained_steps_per_sequence=LENGTH + 1 - OVERLAP, new_steps_per_sequence=LENGTH + 1 - OVERLAP,
                      sequence_overlap=OVERLAP, **kwargs)


def _fill(data: ReplayData, envs: Envs, steps: int, slots=(0, 3, 5), inserted: dict | None = None) -> dict:
    """Steps the environments ``steps`` times, adding every finished unroll; returns them by (lineage, index)."""
    inserted = {} if inserted is None else inserted
    for _ in range(steps):
        batch = envs.step(list(slots))
        if batch is not None:
            data.add(batch)
            inserted.update({(u.lineage, u.index): u for u in batch.unrolls()})
    return inserted


def _assert_same(sampled: Unroll, inserted: Unroll) -> None:
    assert sorted(sampled.steps) == sorted(inserted.steps)
    for name, values in inserted.steps.items():
        assert sampled.steps[name].dtype == values.dtype, name
        np.testing.assert_array_equal(sampled.steps[name], values, err_msg=name)
    assert len(sampled.initial_core_state) == len(inserted.initial_core_state)
    for got, want in zip(sampled.initial_core_state, inserted.initial_core_state):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def _assert_samples_are_inserted(data: ReplayData, inserted: dict, batches: int = 3) -> None:
    for _ in range(batches):
        batch, extras, ids = data.sample()
        assert extras["importance_weights"].shape == (len(batch),) and len(ids) == len(batch)
        for unroll in batch.unrolls():
            _assert_same(unroll, inserted[(unroll.lineage, unroll.index)])


def _live_records(data: ReplayData) -> list:
    return list(data.replay.state_dict()["items"])


def _assert_refcounts(data: ReplayData) -> None:
    """Each chunk is live exactly while some stored sequence uses it, with one reference per such sequence."""
    expected: dict[int, int] = {}
    for record in _live_records(data):
        for chunk in record.chunks:
            expected[chunk] = expected.get(chunk, 0) + 1
    assert data.store.live_chunks == len(expected)
    assert {c: data.store.refs(c) for c in expected} == expected


def test_sampled_sequences_equal_the_inserted_ones_through_fifo_wraparound():
    data = _replay_data(capacity=12)
    envs = Envs()
    inserted: dict = {}
    for _ in range(10):  # 10 x 20 steps of 3 environments: ~150 sequences through 12 slots
        _fill(data, envs, 20, inserted=inserted)
        _assert_samples_are_inserted(data, inserted, batches=1)
        _assert_refcounts(data)
    assert data.replay.num_inserted > 10 * data.replay.capacity
    assert data.store.continued > 100 and data.store.whole == 3  # one whole sequence per environment
    assert data.store.mismatches == 0


def test_a_chunk_is_freed_exactly_when_its_last_sequence_is_evicted():
    data = _replay_data(capacity=4)
    envs = Envs()
    freed_at: dict[int, int] = {}
    born_at: dict[int, int] = {}
    for step in range(200):
        _fill(data, envs, 1, slots=(2,))
        live = {c for r in _live_records(data) for c in r.chunks}
        _assert_refcounts(data)
        for chunk in live:
            born_at.setdefault(chunk, step)
        for chunk in set(born_at) - live - set(freed_at):
            freed_at[chunk] = step
    # Steady state: sequences of 10 steps, one every 4, over chunks of 4 steps (the first, whole
    # sequence is cut 2 + 4 + 4 so that later chunk edges line up): each sequence reads 3 chunks and
    # shares 2 with the next, so the 4 stored sequences hold 4 + 2 chunks.
    assert data.store.live_chunks == 6
    # A chunk holds the new steps of sequence m and serves m, m + 1 and m + 2: it goes when m + 2 is
    # evicted, which inserting m + 6 does, 6 sequences of 4 steps later.
    lifetimes = [freed_at[c] - born_at[c] for c in freed_at if born_at[c] > 40]
    assert len(lifetimes) > 20 and set(lifetimes) == {6 * 4}


def test_checkpoint_round_trip_gives_the_same_sequences_and_refcounts():
    data = _replay_data(capacity=10)
    envs = Envs(seed=3)
    inserted = _fill(data, envs, 120)
    buffer = io.BytesIO()
    torch.save(data.state_dict(), buffer)
    state = torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)
    blobs = [v for v in state["replay"]["sequences"].values() if isinstance(v, torch.Tensor)]
    assert all(v.dtype in (torch.uint8, torch.int64) for v in blobs)  # flat tensors, no pickled arrays

    restored = _replay_data(capacity=10)
    restored.load_state_dict(state)
    assert len(restored.replay) == 10
    assert restored.store.chunk_bytes == data.store.chunk_bytes
    _assert_refcounts(restored)
    assert [(r.lineage, r.index) for r in _live_records(restored)] == [(r.lineage, r.index)
                                                                        for r in _live_records(data)]
    _assert_samples_are_inserted(restored, inserted)
    # New inserts after loading: each environment's next sequence starts a new chunk chain
    # (stored whole), then continues; the loaded sequences are evicted and their chunks freed.
    _fill(restored, envs, 60, inserted=inserted)
    assert restored.store.whole == 3 and restored.store.continued > 0
    _assert_refcounts(restored)
    _assert_samples_are_inserted(restored, inserted)


def _window(rng, k: int, lineage: int, index: int) -> Unroll:
    """Unroll ``k`` of one fixed stream of steps, labelled ``lineage, index``, its initial state drawn from ``rng``."""
    period = LENGTH + 1 - OVERLAP
    whole = np.random.default_rng(7)
    steps = 60
    frames = whole.integers(0, 256, (steps, *FRAME), np.uint8)
    reward = whole.normal(size=steps).astype(np.float32)
    action = whole.integers(0, 6, steps)
    window = slice(k * period, k * period + LENGTH + 1)
    return Unroll(
        steps={"observation": frames[window], "reward": reward[window], "done": np.zeros(LENGTH + 1, bool),
               "action": action[window]},
        agent_outputs={"q": np.zeros((LENGTH + 1, 6), np.float32)},
        initial_core_state=(rng.integers(0, 256, (3, *FRAME), np.uint8), rng.normal(size=5).astype(np.float32)),
        lineage=lineage, index=index,
    )


def test_sequences_without_a_usable_predecessor_are_stored_whole_and_still_equal():
    rng = np.random.default_rng(5)
    store = ChunkStore(OVERLAP)
    first = _window(rng, 0, 0, 0)
    cases = [
        _window(rng, 1, 0, 1),  # continues: the only one stored by its new steps
        _window(rng, 2, -1, -1),  # unknown lineage
        _window(rng, 3, 0, 3),  # a gap: index 2 never came
        _window(rng, 9, 0, 4),  # claims to continue index 3, but its first steps differ
    ]
    records = [store.add(first)] + [store.add(u) for u in cases]
    assert (store.continued, store.whole, store.mismatches) == (1, 4, 1)
    assert len(records[1].chunks) == len(records[0].chunks) and records[1].chunks[:-1] == records[0].chunks[1:]
    batch = store.gather(records)
    for got, want in zip(batch.unrolls(), [first, *cases]):
        _assert_same(got, want)
        assert (got.lineage, got.index) == (want.lineage, want.index)
    assert batch.agent_outputs == {}  # not stored: training never reads them
    # An evicted predecessor cannot be continued: its chunks are gone.
    store.release(records)
    assert store.live_chunks == 0 and store.chunk_bytes == 0
    store.add(_window(rng, 10, 0, 5))
    assert store.whole == 5


def test_overlapping_sequences_store_each_step_about_once():
    noise, smooth = Envs(seed=2, frame=(1, 84, 84)), Envs(seed=2, frame=(1, 84, 84), noise=False)
    for envs in (noise, smooth):
        deduplicated = _replay_data(capacity=1000)
        _fill(deduplicated, envs, 400, slots=(0,))
        records = _live_records(deduplicated)
        steps = sum(r.length for r in records)
        # The same sequences without continuity: every one stored whole.
        whole = ChunkStore(OVERLAP)
        for record in deduplicated.store.gather(records).unrolls():
            record.lineage = record.index = -1
            whole.add(record)
        ratio = whole.chunk_bytes / deduplicated.store.chunk_bytes
        raw_bytes_per_step = 84 * 84 + 4 + 1 + 1 + 8
        per_step = deduplicated.store.chunk_bytes / steps
        if envs is smooth:  # compressible frames: far below raw, as Atari screens are
            assert ratio > 2.3, ratio
            assert per_step < raw_bytes_per_step / 100, per_step
        else:
            # Noise does not compress, so this is deduplication alone: a sequence of 10 steps adds 4
            # new ones, 10 / 4 = 2.5 times fewer bytes (less a little: the first sequence is whole).
            assert 2.3 < ratio <= 2.5, ratio
            assert per_step == pytest.approx(raw_bytes_per_step / 2.5, rel=0.1)


def test_a_refused_insertion_holds_no_chunks():
    data = _replay_data(capacity=10, initial_priority=lambda unroll: float("nan"))
    envs = Envs()
    with pytest.raises(ValueError, match="priority"):
        _fill(data, envs, LENGTH + 1)
    assert data.store.live_chunks == 0 and len(data.replay) == 0



def test_a_thread_pool_gathers_the_same_batch(monkeypatch):
    ran_on: set[str] = set()  # the threads the pool ran decompression tasks on

    class RecordingPool(chunk_store.ThreadPoolExecutor):
        def submit(self, fn, /, *args, **kwargs):
            def recorded(*a, **k):
                ran_on.add(threading.current_thread().name)
                return fn(*a, **k)

            return super().submit(recorded, *args, **kwargs)

    monkeypatch.setattr(chunk_store, "ThreadPoolExecutor", RecordingPool)
    envs, unrolls = Envs(seed=6), []
    while len(unrolls) < 30:
        batch = envs.step([0, 1])
        unrolls += [] if batch is None else batch.unrolls()
    pooled, serial = ChunkStore(OVERLAP, threads=3), ChunkStore(OVERLAP, threads=0)
    records = [(pooled.add(u), serial.add(u)) for u in unrolls]
    order = np.random.default_rng(0).permutation(len(records)).tolist() * 2  # repeats, like a prioritized draw
    assert len({c for p, _ in records for c in p.chunks}) >= 16  # enough chunks for the pool
    batch = pooled.gather([records[i][0] for i in order])
    reference = serial.gather([records[i][1] for i in order])
    for got, want, i in zip(batch.unrolls(), reference.unrolls(), order):
        _assert_same(got, unrolls[i])
        _assert_same(want, unrolls[i])
    assert ran_on and all(name.startswith("replay-decompress") for name in ran_on), ran_on


def test_a_prefetched_batch_survives_the_eviction_of_its_sequences(monkeypatch):
    # The worker draws the next batch while the training thread trains and inserts. Here its decompression
    # waits until every sequence it drew has been evicted (and its chunks freed) by new insertions on this
    # thread, which must not wait for it; the batch still holds the inserted steps.
    gather, gate, freed_at_gather = ChunkStore.gather, threading.Event(), []

    def gated_gather(store, records, chunks=None):
        if threading.current_thread() is not threading.main_thread():
            gate.wait(timeout=5)
            freed_at_gather.append(len(set(chunks or ()) - set(store._chunks)))
        return gather(store, records, chunks)

    monkeypatch.setattr(ChunkStore, "gather", gated_gather)
    data = _replay_data(capacity=12, prefetch=True)
    envs = Envs()
    inserted = _fill(data, envs, 30)
    data.sample()  # drawn on this thread; the worker now draws the next batch and waits at its decompression
    _fill(data, envs, 60, inserted=inserted)  # ~40 new sequences through the 12 slots, while the worker waits
    gate.set()
    batch, _, ids = data.sample()
    live = {(r.lineage, r.index) for r in _live_records(data)}
    assert not {(u.lineage, u.index) for u in batch.unrolls()} & live  # all evicted before they were read
    assert freed_at_gather and freed_at_gather[0] > 0
    for unroll in batch.unrolls():
        _assert_same(unroll, inserted[(unroll.lineage, unroll.index)])
    data.after_train(ids, np.ones(len(ids)))  # stale ids: their updates are dropped, nothing fails
    _assert_refcounts(data)


def test_prefetching_draws_the_same_batches_in_the_same_order():
    batches = {}
    for prefetch in (False, True):
        data = _replay_data(capacity=40, prefetch=prefetch)
        _fill(data, Envs(), 40)
        batches[prefetch] = [data.sample()[2].tolist() for _ in range(4)]  # no priority updates between draws
        assert (data._next is not None) == prefetch
    assert batches[True] == batches[False]


@pytest.mark.parametrize(
    "setting, device, expected",
    [("auto", "cpu", False), ("auto", "cuda", True), ("on", "cpu", True), ("off", "cuda", False)],
)
def test_auto_prefetches_only_for_an_accelerator_learner(setting, device, expected):
    from seed_rl.agents.r2d2.builder import prefetches

    assert prefetches(setting, torch.device(device)) is expected
