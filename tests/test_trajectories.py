"""Tests for seed_rl.learner.trajectories: unroll assembly as batched tensors."""

from __future__ import annotations

import dataclasses
import numpy as np
import pytest
import torch

from seed_rl.core.unroll import Unroll
from seed_rl.core.unroll import UnrollBatch, UnrollShape
from seed_rl.learner.trajectories import TrajectoryStore

CPU = torch.device("cpu")


def _value(slot: int, t: int) -> int:
    return 100 * slot + t


def _write(store: TrajectoryStore, slots, times, capacity: int = 8) -> UnrollBatch | None:
    """Writes step ``times[i]`` of the environment in ``slots[i]``; every field encodes (slot, t)."""
    values = torch.tensor([_value(s, t) for s, t in zip(slots, times)])
    step = {
        "observation": values.view(-1, 1, 1).expand(-1, 2, 2).contiguous(),
        "reward": values.float() / 2,
        "done": torch.tensor([t % 4 == 0 for t in times]),
        "truncated": torch.tensor([t % 8 == 0 for t in times]),
        "life_lost": torch.tensor([t % 4 == 2 for t in times]),
        "action": values % 3,
    }
    outputs = {"policy_logits": torch.stack([values.float(), -values.float()], -1), "baseline": values.float()}
    state_before = (values.float().view(-1, 1).expand(-1, 3) + 1000, values.view(-1, 1))
    return store.write(np.asarray(slots, np.int64), step, outputs, state_before, capacity)


def _check_unroll(unroll: Unroll, slot: int, first: int, length: int) -> None:
    steps = [_value(slot, t) for t in range(first, first + length + 1)]
    times = list(range(first, first + length + 1))
    assert unroll.steps["observation"].shape == (length + 1, 2, 2)
    assert unroll.steps["observation"][:, 0, 0].tolist() == steps
    assert unroll.steps["reward"].dtype == np.float32 and unroll.steps["reward"].tolist() == [v / 2 for v in steps]
    assert unroll.steps["done"].dtype == bool and unroll.steps["done"].tolist() == [t % 4 == 0 for t in times]
    assert unroll.steps["truncated"].tolist() == [t % 8 == 0 for t in times]
    assert unroll.steps["action"].dtype == np.int64 and unroll.steps["action"].tolist() == [v % 3 for v in steps]
    assert unroll.agent_outputs["policy_logits"][:, 0].tolist() == steps
    assert unroll.agent_outputs["baseline"].tolist() == steps
    # The recurrent state before the unroll's first step.
    assert unroll.initial_core_state[0].tolist() == [1000.0 + steps[0]] * 3
    assert unroll.initial_core_state[1].tolist() == [steps[0]]


def test_unrolls_of_environments_at_different_phases_with_one_step_overlap():
    length = 3
    store = TrajectoryStore(UnrollShape(length + 1))
    emitted: list[tuple[int, Unroll]] = []
    # Slot 0 starts at call 0, slot 5 joins at call 2: each has its own position.
    for call in range(12):
        slots = [0] if call < 2 else [0, 5]
        times = [call] if call < 2 else [call, call - 2]
        batch = _write(store, slots, times)
        if batch is not None:
            assert batch.steps["observation"].shape[:2] == (length + 1, len(batch))
            emitted += [(call, u) for u in batch.unrolls()]
    firsts = {0: [], 5: []}
    for _, unroll in emitted:
        slot = int(unroll.steps["observation"][0, 0, 0]) // 100
        first = int(unroll.steps["observation"][0, 0, 0]) % 100
        firsts[slot].append(first)
        _check_unroll(unroll, slot, first, length)
    assert firsts == {0: [0, 3, 6], 5: [0, 3, 6]}  # steps 0..3, 3..6, 6..9: one shared step
    # What each slot holds shows in when its next unroll comes: slot 0 holds steps 9..11, so one more step
    # completes its next unroll; slot 5 holds step 9 only, so it needs three more.
    first_steps = lambda batch: [int(u.steps["observation"][0, 0, 0]) for u in batch.unrolls()]  # noqa: E731
    assert first_steps(_write(store, [0, 5], [12, 10])) == [_value(0, 9)]
    assert _write(store, [5], [11]) is None
    assert first_steps(_write(store, [5], [12])) == [_value(5, 9)]


@pytest.mark.parametrize("length, overlap", [(5, 3), (4, 0), (6, 6), (1, 1)])
def test_overlapping_sequences_start_every_period_steps(length, overlap):
    store = TrajectoryStore(UnrollShape(length + 1, overlap))
    period = length + 1 - overlap
    emitted = []
    for t in range(40):
        batch = _write(store, [2], [t])
        if batch is not None:
            emitted += batch.unrolls()
    assert len(emitted) >= 3
    for k, unroll in enumerate(emitted):
        _check_unroll(unroll, 2, k * period, length)


def test_handed_over_unrolls_do_not_alias_the_buffers():
    store = TrajectoryStore(UnrollShape(2))
    _write(store, [0], [0])
    batch = _write(store, [0], [1])
    before = batch.steps["observation"].clone()
    for t in range(2, 6):
        _write(store, [0], [t])
    assert torch.equal(batch.steps["observation"], before)


def test_reset_slot_starts_a_fresh_unroll():
    store = TrajectoryStore(UnrollShape(3))
    _write(store, [1], [0])
    _write(store, [1], [1])
    store.reset([1])  # the environment left; a new one takes the slot
    assert _write(store, [1], [10]) is None
    assert _write(store, [1], [11]) is None
    (unroll,) = _write(store, [1], [12]).unrolls()
    _check_unroll(unroll, 1, 10, 2)


def test_growing_capacity_keeps_partial_unrolls():
    store = TrajectoryStore(UnrollShape(3))
    _write(store, [3], [0], capacity=4)
    _write(store, [3], [1], capacity=4)
    batch = _write(store, [3, 6], [2, 0], capacity=8)
    assert store.capacity == 8
    (unroll,) = batch.unrolls()
    _check_unroll(unroll, 3, 0, 2)


@pytest.mark.parametrize("length, overlap, match", [(0, 0, "at least 2 steps"), (3, 4, "overlap"), (3, -1, "overlap")])
def test_bad_lengths_are_refused(length, overlap, match):
    with pytest.raises(ValueError, match=match):
        TrajectoryStore(UnrollShape(length + 1, overlap))


def _single(first: int, length: int = 3) -> Unroll:
    steps = np.arange(first, first + length + 1)
    return Unroll(
        steps={
            "observation": np.stack([np.full((2, 2), t, np.uint8) for t in steps]),
            "reward": steps.astype(np.float32), "done": steps % 2 == 0, "action": steps % 3,
            "truncated": np.zeros(length + 1, bool),
        },
        agent_outputs={"baseline": steps.astype(np.float32)},
        initial_core_state=(np.full(3, first, np.float32),),
    )


def test_batches_stack_time_major_and_split_back():
    batch = UnrollBatch.from_unrolls([_single(0), _single(10)], CPU)
    assert batch.steps["observation"].shape == (4, 2, 2, 2) and len(batch) == 2
    assert batch.steps["observation"][:, 1, 0, 0].tolist() == [10, 11, 12, 13]
    assert batch.initial_core_state[0][:, 0].tolist() == [0.0, 10.0]
    joined = UnrollBatch.concat([batch, UnrollBatch.from_unrolls([_single(20)], CPU)])
    assert len(joined) == 3
    tail = joined.select(slice(1, None))
    assert [int(u.steps["observation"][0, 0, 0]) for u in tail.unrolls()] == [10, 20]
    training = tail.training_batch()
    assert training["reward"].shape == (4, 2) and training["agent_outputs"]["baseline"].shape == (4, 2)
    assert training["initial_core_state"][0].shape == (2, 3)


def _collect(store: TrajectoryStore, slots, times, capacity: int = 8) -> list[Unroll]:
    batch = _write(store, slots, times, capacity)
    return [] if batch is None else batch.unrolls()


def _assert_continues(earlier: Unroll, later: Unroll, overlap: int) -> None:
    """The contract: the last ``overlap`` steps of ``earlier`` are the first ``overlap`` steps of ``later``."""
    assert (later.lineage, later.index) == (earlier.lineage, earlier.index + 1)
    for name, values in earlier.steps.items():
        np.testing.assert_array_equal(values[len(values) - overlap:], later.steps[name][:overlap], err_msg=name)


@pytest.mark.parametrize("length, overlap", [(5, 3), (3, 1), (4, 0)])
def test_consecutive_unrolls_of_a_slot_form_a_lineage_that_shares_overlap_steps(length, overlap):
    store = TrajectoryStore(UnrollShape(length + 1, overlap))
    emitted: dict[int, list[Unroll]] = {1: [], 4: []}
    for t in range(30):
        for unroll in _collect(store, [1, 4], [t, t + 50]):
            emitted[int(unroll.steps["observation"][0, 0, 0]) // 100].append(unroll)
    for unrolls in emitted.values():
        assert [u.index for u in unrolls] == list(range(len(unrolls))) and len(unrolls) >= 3
        for earlier, later in zip(unrolls, unrolls[1:]):
            _assert_continues(earlier, later, overlap)
    assert emitted[1][0].lineage != emitted[4][0].lineage  # one lineage per slot


def test_a_reset_slot_starts_a_new_lineage_at_index_0():
    store = TrajectoryStore(UnrollShape(3, 1))
    before = [u for t in range(6) for u in _collect(store, [3], [t])]
    store.reset([3])
    after = [u for t in range(20, 26) for u in _collect(store, [3], [t])]
    other = [u for t in range(3) for u in _collect(store, [5], [t])]
    assert [u.index for u in before] == [0, 1] and [u.index for u in after] == [0, 1]
    assert len({before[0].lineage, after[0].lineage, other[0].lineage}) == 3  # never reused
    assert after[0].steps["observation"][0, 0, 0] == _value(3, 20)  # nothing from before the reset
    _assert_continues(after[0], after[1], 1)


def test_compaction_keeps_lineages_and_their_counts():
    store = TrajectoryStore(UnrollShape(4, 2))
    first = [u for t in range(6) for u in _collect(store, [2, 6], [t, t + 10])]
    moved = np.full(8, -1, np.int64)
    moved[[2, 6]] = [1, 0]  # slot 2 -> 1, slot 6 -> 0; the others dropped
    store.compact(moved, 4)
    # Steps written from now on encode the new slots: the lineage tells the environments apart.
    later = [u for t in range(6, 10) for u in _collect(store, [1, 0], [t, t + 10], capacity=4)]
    assert len(later) == 4
    for lineage in {u.lineage for u in first}:
        earlier = [u for u in first if u.lineage == lineage]
        continued = [u for u in later if u.lineage == lineage]
        assert len(earlier) == 2 and len(continued) == 2
        _assert_continues(earlier[-1], continued[0], 2)


def test_batches_carry_lineage_and_index_through_select_concat_and_move():
    store = TrajectoryStore(UnrollShape(2, 1))
    _write(store, [0, 1, 2], [0, 0, 0])
    batch = _write(store, [0, 1, 2], [1, 1, 1])
    assert batch.lineage.tolist() == [0, 1, 2] and batch.index.tolist() == [0, 0, 0]
    picked = batch.select(torch.tensor([2, 0])).to(CPU)
    assert picked.lineage.tolist() == [2, 0] and picked.index.tolist() == [0, 0]
    made = UnrollBatch.from_unrolls([_single(0)], CPU)  # an Unroll made without continuity
    assert made.lineage.tolist() == [-1] and made.index.tolist() == [-1]
    unknown = dataclasses.replace(batch.select(slice(1, 2)), lineage=None, index=None)
    joined = UnrollBatch.concat([picked, unknown])
    assert joined.lineage.tolist() == [2, 0, -1] and joined.index.tolist() == [0, 0, -1]
    again = UnrollBatch.from_unrolls(joined.unrolls(), CPU)
    assert again.lineage.tolist() == [2, 0, -1] and again.index.tolist() == [0, 0, -1]
    assert UnrollBatch.concat([unknown, unknown]).lineage is None
