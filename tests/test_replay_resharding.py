"""A run resumed on another number of learner ranks moves R2D2's replay onto its new shards.

Real :class:`ReplayData` shards are filled with a few sequences of small fake
frames (consecutive sequences of an environment share steps, so they share
chunks), checkpointed as the learner does (``{"data_shards": [...]}``), moved
to another rank count through the loop's ``data_shards`` and loaded into shards
of the new capacity ``ceil(C / N)``: every sequence comes back with its
priority and its frames.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from seed_rl.agents.r2d2.replay_data import ReplayData
from seed_rl.core.training_data import OnPolicyData
from seed_rl.core.unroll import Unroll, UnrollBatch
from seed_rl.learner.loop import data_shards
from seed_rl.replay.prioritized import PrioritizedReplay

CPU = torch.device("cpu")
STEPS, OVERLAP = 5, 3  # sequences of 5 steps, one every 2 steps of an environment
CAPACITY = 12  # --replay_capacity: each of N shards holds ceil(12 / N)
ALPHA = 0.6


def _frames(lineage: int, t: int) -> np.ndarray:
    """Environment ``lineage``'s frame at step ``t``: the same wherever a sequence holds that step."""
    return np.random.default_rng([lineage, t]).integers(0, 256, (2, 3, 3), np.uint8)


def sequence(lineage: int, index: int) -> Unroll:
    """Sequence ``index`` of environment ``lineage``: its steps ``2 * index ...``."""
    ts = range(index * (STEPS - OVERLAP), index * (STEPS - OVERLAP) + STEPS)
    return Unroll(
        steps={"observation": np.stack([_frames(lineage, t) for t in ts]),
               "reward": np.array([lineage + t / 100 for t in ts], np.float32),
               "done": np.zeros(STEPS, bool), "action": np.array([t % 3 for t in ts], np.int64)},
        agent_outputs={}, initial_core_state=(np.array([lineage, index], np.float32),),
        lineage=lineage, index=index,
    )


def priority(unroll: Unroll) -> float:
    return 1.0 + unroll.lineage + unroll.index / 10  # distinct for every sequence


def shard(capacity: int, alpha: float = ALPHA, seed: int = 0) -> ReplayData:
    return ReplayData(PrioritizedReplay(capacity, alpha, seed=seed), batch_size=3, replay_ratio=1.0, min_size=1,
                      trained_steps_per_sequence=3, new_steps_per_sequence=2, initial_priority=priority,
                      sequence_overlap=OVERLAP)


def filled(ranks: int, per_rank: int, envs: int = 2) -> list[ReplayData]:
    """A run of ``ranks`` shards; each rank's ``envs`` environments add ``per_rank`` sequences in all."""
    shards = [shard(-(-CAPACITY // ranks), seed=r) for r in range(ranks)]
    for r, data in enumerate(shards):
        for i in range(per_rank):
            lineage = 10 * (r + 1) + i % envs
            data.add(UnrollBatch.from_unrolls([sequence(lineage, i // envs)], CPU))
        data.trained_steps = 7 * (r + 1)
    return shards


def checkpointed(shards: list[ReplayData]) -> dict:
    """What rank 0 writes and reads back: one learner's ``data``, several ranks' ``data_shards``."""
    states = [data.state_dict() for data in shards]
    state = {"data_shards": states} if len(states) > 1 else {"data": states[0]}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


def contents(data: ReplayData) -> dict[tuple[int, int], float]:
    """Every stored sequence's ``(lineage, index)`` and raw priority."""
    state = data.replay.state_dict()
    raw = state["priorities"][: len(state["items"])] ** (1 / data.replay.priority_exponent)
    return {(r.lineage, r.index): float(p) for r, p in zip(state["items"], raw)}


def resumed(old: list[ReplayData], ranks: int, capacity: int = CAPACITY, alpha: float = ALPHA) -> list[ReplayData]:
    """``old``'s checkpoint resumed on ``ranks`` ranks, each shard of capacity ``ceil(capacity / ranks)``."""
    new = [shard(-(-capacity // ranks), alpha, seed=100 + r) for r in range(ranks)]
    states = data_shards(checkpointed(old), ranks, new[0].reshard)  # on rank 0, with its own (equal) shard
    assert len(states) == ranks
    for data, state in zip(new, states):
        data.load_state_dict(state)
    return new


def assert_frames_are_the_originals(data: ReplayData) -> None:
    """Every stored sequence, and a sampled batch, hold the steps and state the sequence was inserted with."""
    records = data.replay.state_dict()["items"]
    batches = [data.store.gather(records)] if records else []
    if records:
        batches.append(data.sample()[0])
    for batch in batches:
        for b, (lineage, index) in enumerate(zip(batch.lineage.tolist(), batch.index.tolist())):
            original = sequence(lineage, index)
            for name, steps in original.steps.items():
                np.testing.assert_array_equal(batch.steps[name][:, b].numpy(), steps, err_msg=name)
            np.testing.assert_array_equal(batch.initial_core_state[0][b].numpy(), original.initial_core_state[0])


@pytest.mark.parametrize("before, after, per_rank", [(2, 1, 5), (1, 2, 10), (2, 3, 5), (1, 2, 3), (3, 2, 4)])
def test_every_sequence_moves_with_its_priority_and_frames(before, after, per_rank):
    old = filled(before, per_rank)
    stored = {key: p for data in old for key, p in contents(data).items()}
    assert len(stored) == before * per_rank

    new = resumed(old, after)

    moved = [contents(data) for data in new]
    sizes = [len(m) for m in moved]
    assert sum(sizes) == len(stored) and max(sizes) - min(sizes) <= 1  # dealt evenly, none dropped
    assert all(size <= data.replay.capacity == -(-CAPACITY // after) for size, data in zip(sizes, new))
    assert sorted(p for m in moved for p in m.values()) == pytest.approx(sorted(stored.values()))
    assert {key: p for m in moved for key, p in m.items()} == pytest.approx(stored)
    # The replay ratio's counters: their sums are kept, split evenly; the largest priority seen stays.
    for counter in ("inserted_steps", "trained_steps"):
        counts = [getattr(d, counter) for d in new]
        assert sum(counts) == sum(getattr(d, counter) for d in old) and max(counts) - min(counts) <= 1
    assert all(d.max_priority == max(o.max_priority for o in old) for d in new)
    for data in new:
        assert_frames_are_the_originals(data)  # samples a batch (counted as trained)


def test_new_sequences_go_on_after_the_moved_ones():
    new = resumed(filled(2, 5), 3)
    for data in new:
        moved = list(contents(data))  # oldest first
        for i in range(data.replay.capacity):  # fills the shard, then evicts the moved ones, oldest first
            data.add(UnrollBatch.from_unrolls([sequence(99, i)], CPU))
            kept = list(contents(data))
            assert set(kept) == set(moved[max(0, i + 1 + len(moved) - data.replay.capacity):]) | {
                (99, j) for j in range(i + 1)}
            assert_frames_are_the_originals(data)


def test_too_many_sequences_for_the_new_capacity_keeps_the_newest():
    old = filled(2, 9)  # each rank's shard of 6 holds its 6 newest
    stored = {key: p for data in old for key, p in contents(data).items()}
    new = resumed(old, 3, capacity=7)  # 3 shards of 3: room for 9 of the 12
    moved = {key: p for data in new for key, p in contents(data).items()}
    assert [len(contents(data)) for data in new] == [3, 3, 3]
    # Each rank's 4 newest (ages 1-4 on both) and then, of the two 5th newest, rank 0's.
    newest = {(10 * r + env, index) for r in (1, 2) for env, index in ((0, 4), (1, 3), (0, 3), (1, 2))}
    assert set(moved) == newest | {(10, 2)}
    assert moved == pytest.approx({key: stored[key] for key in moved})
    for data in new:
        assert_frames_are_the_originals(data)


def test_priorities_saved_with_another_exponent_are_converted():
    new = resumed(filled(2, 5), 1, alpha=0.9)
    stored = {key: p for data in filled(2, 5) for key, p in contents(data).items()}
    assert contents(new[0]) == pytest.approx(stored)


def test_the_same_rank_count_and_capacity_resumes_exactly():
    old = filled(2, 5)
    states = checkpointed(old)["data_shards"]
    assert data_shards({"data_shards": states}, 2, old[0].reshard) == states


def test_shards_without_contents_keep_their_counters():
    old = filled(2, 5)
    for data in old:
        data.checkpoint_contents = False  # --nocheckpoint_replay
    new = resumed(old, 3)
    assert [len(data.replay) for data in new] == [0, 0, 0]
    assert sum(d.inserted_steps for d in new) == sum(d.inserted_steps for d in old)


def test_impala_resumes_on_any_rank_count():
    data = OnPolicyData(batch_size=4)
    for before in (1, 2, 3):
        for after in (1, 2, 3):
            state = {"data_shards": [{}] * before} if before > 1 else {"data": {}}
            assert data_shards(state, after, data.reshard) == [{}] * after
