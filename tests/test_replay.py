"""PrioritizedReplay: proportional prioritized replay on the sum-tree."""

from __future__ import annotations

import inspect
import io
import pickle

import numpy as np
import pytest
import torch

from seed_rl.replay import PrioritizedReplay

# 0.9999 quantiles of the chi-square distribution, by degrees of freedom.
CHI2_9999 = {1: 15.137, 2: 18.421, 3: 21.108, 4: 23.513, 5: 25.745, 6: 27.856, 7: 29.877, 8: 31.828}


def items_of(n: int, start: int = 0) -> list[dict]:
    return [{"obs": np.full((3, 2), i, dtype=np.float32), "id": i} for i in range(start, start + n)]


def count_draws(replay: PrioritizedReplay, batches: int, batch_size: int) -> dict[int, int]:
    counts: dict[int, int] = {}
    for _ in range(batches):
        _, items, _ = replay.sample(batch_size)
        for item in items:
            counts[item["id"]] = counts.get(item["id"], 0) + 1
    return counts


def assert_frequencies(counts: dict[int, int], probabilities: dict[int, float]) -> None:
    total = sum(counts.values())
    assert set(counts) <= {k for k, p in probabilities.items() if p > 0}
    stat = sum(
        (counts.get(k, 0) - total * p) ** 2 / (total * p) for k, p in probabilities.items() if p > 0
    )
    dof = sum(p > 0 for p in probabilities.values()) - 1
    assert stat < CHI2_9999[dof], (stat, counts)


def test_defaults_are_pers_proportional_variant():
    parameters = inspect.signature(PrioritizedReplay).parameters
    assert parameters["priority_exponent"].default == 0.6
    assert parameters["importance_sampling_exponent"].default == 0.4


def test_sampling_follows_priorities_to_the_alpha():
    alpha = 0.7
    replay = PrioritizedReplay(8, priority_exponent=alpha, seed=1)
    raw = np.array([1.0, 4.0, 0.0, 2.0, 9.0, 0.5])
    ids = replay.insert(items_of(6), raw)
    np.testing.assert_array_equal(ids, np.arange(6))
    assert len(replay) == 6
    assert replay.total_priority() == pytest.approx(np.sum(raw**alpha))
    scaled = raw**alpha
    counts = count_draws(replay, 2000, 32)
    assert_frequencies(counts, {i: scaled[i] / scaled.sum() for i in range(6)})
    assert 2 not in counts  # Priority 0 is never sampled.


def test_update_priorities_changes_frequencies():
    replay = PrioritizedReplay(4, priority_exponent=1.0, seed=2)
    replay.insert(items_of(4), np.ones(4))
    applied = replay.update_priorities(np.array([0, 3]), np.array([0.0, 5.0]))
    np.testing.assert_array_equal(applied, [True, True])
    np.testing.assert_array_equal(replay.get_priorities(np.arange(4)), [0.0, 1.0, 1.0, 5.0])
    counts = count_draws(replay, 1000, 16)
    assert_frequencies(counts, {0: 0.0, 1: 1 / 7, 2: 1 / 7, 3: 5 / 7})


def test_stratified_batches_spread_over_the_range():
    replay = PrioritizedReplay(4, priority_exponent=1.0, seed=3)
    replay.insert(items_of(4), np.ones(4))
    # Equal priorities, 4 strata of width 1: each batch of 4 holds every item once.
    for _ in range(20):
        ids, _, _ = replay.sample(4)
        np.testing.assert_array_equal(ids, [0, 1, 2, 3])


def test_importance_weights_formula():
    alpha, beta = 0.9, 0.6
    replay = PrioritizedReplay(10, priority_exponent=alpha, importance_sampling_exponent=beta)
    raw = np.array([0.5, 1.0, 2.0, 3.0, 8.0])
    replay.insert(items_of(5), raw)
    probabilities = raw**alpha / np.sum(raw**alpha)
    for _ in range(10):
        ids, items, weights = replay.sample(16)
        assert ids.dtype == np.int64 and weights.dtype == np.float32
        assert [item["id"] for item in items] == ids.tolist()
        unnormalised = (len(replay) * probabilities[ids]) ** -beta
        np.testing.assert_allclose(weights, unnormalised / unnormalised.max(), rtol=1e-6)
        assert weights.max() == 1.0
        # Rarer items get larger weights.
        order = np.argsort(probabilities[ids])
        assert np.all(np.diff(weights[order]) <= 1e-7)
    replay.importance_sampling_exponent = 0.0
    np.testing.assert_array_equal(replay.sample(8)[2], np.ones(8, dtype=np.float32))


def test_fifo_eviction_replaces_oldest_item_and_its_priority():
    replay = PrioritizedReplay(3, priority_exponent=1.0, seed=4)
    replay.insert(items_of(3), np.array([100.0, 1.0, 1.0]))
    assert len(replay) == 3
    ids = replay.insert(items_of(1, start=3), np.array([2.0]))
    np.testing.assert_array_equal(ids, [3])
    assert len(replay) == 3 and replay.num_inserted == 4
    # Item 0 and its priority 100 are gone; item 3 holds slot 0 with priority 2.
    assert replay.total_priority() == 4.0
    np.testing.assert_array_equal(replay.get_priorities(np.array([0, 1, 2, 3])), [np.nan, 1, 1, 2])
    counts = count_draws(replay, 500, 8)
    assert set(counts) == {1, 2, 3}
    assert_frequencies(counts, {1: 0.25, 2: 0.25, 3: 0.5})
    # Next the oldest is item 1, then 2.
    replay.insert(items_of(2, start=4), np.array([1.0, 1.0]))
    assert set(count_draws(replay, 50, 8)) == {3, 4, 5}


def test_inserting_more_than_capacity_at_once_keeps_the_newest():
    replay = PrioritizedReplay(3, priority_exponent=1.0)
    ids = replay.insert(items_of(5), np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    np.testing.assert_array_equal(ids, np.arange(5))
    assert len(replay) == 3
    assert replay.total_priority() == 12.0
    assert set(count_draws(replay, 50, 6)) == {2, 3, 4}


def test_stale_priority_updates_are_ignored():
    replay = PrioritizedReplay(2, priority_exponent=1.0, seed=5)
    replay.insert(items_of(2), np.array([1.0, 1.0]))
    sampled, _, _ = replay.sample(2)
    np.testing.assert_array_equal(sampled, [0, 1])
    replay.insert(items_of(1, start=2), np.array([3.0]))  # Overwrites item 0's slot.
    applied = replay.update_priorities(sampled, np.array([50.0, 7.0]))
    np.testing.assert_array_equal(applied, [False, True])
    # Slot 0 still holds item 2 with its own priority; item 1 got the update.
    np.testing.assert_array_equal(replay.get_priorities(np.array([2, 1])), [3.0, 7.0])
    assert replay.total_priority() == 10.0
    with pytest.raises(ValueError, match="never issued"):
        replay.update_priorities(np.array([3]), np.array([1.0]))
    with pytest.raises(ValueError, match="never issued"):
        replay.update_priorities(np.array([-1]), np.array([1.0]))


@pytest.mark.parametrize("bad", [-1.0, np.nan, np.inf])
def test_invalid_priorities_raise_and_change_nothing(bad):
    replay = PrioritizedReplay(4, priority_exponent=1.0)
    replay.insert(items_of(2), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="position 1"):
        replay.insert(items_of(2, start=2), np.array([1.0, bad]))
    assert len(replay) == 2 and replay.num_inserted == 2
    with pytest.raises(ValueError, match="position 1"):
        replay.update_priorities(np.array([0, 1]), np.array([5.0, bad]))
    np.testing.assert_array_equal(replay.get_priorities(np.array([0, 1])), [1.0, 2.0])
    with pytest.raises(ValueError, match="expected 2 priorities"):
        replay.insert(items_of(2), np.array([1.0]))


def test_sampling_errors():
    replay = PrioritizedReplay(4)
    with pytest.raises(ValueError, match="empty"):
        replay.sample(2)
    replay.insert(items_of(2), np.zeros(2))
    with pytest.raises(ValueError, match="priority 0"):
        replay.sample(2)
    with pytest.raises(ValueError, match="batch_size"):
        replay.sample(0)
    with pytest.raises(ValueError, match="capacity"):
        PrioritizedReplay(0)


def test_state_dict_round_trip_resumes_identically():
    replay = PrioritizedReplay(5, priority_exponent=0.9, seed=6)
    replay.insert(items_of(7), np.arange(1.0, 8.0))  # Wrapped: position 2.
    ids, _, _ = replay.sample(4)
    replay.update_priorities(ids, np.full(4, 0.25))
    state = replay.state_dict()
    assert state["position"] == 2 and state["num_inserted"] == 7
    # Through torch.save, as a learner checkpoint would be.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)

    restored = PrioritizedReplay(5, priority_exponent=0.9, seed=999)
    restored.load_state_dict(loaded)
    assert len(restored) == 5 and restored.num_inserted == 7
    assert restored.total_priority() == replay.total_priority()
    np.testing.assert_array_equal(
        restored.get_priorities(np.arange(7)), replay.get_priorities(np.arange(7))
    )
    for _ in range(5):  # Same rng state: same batches.
        a, b = replay.sample(3), restored.sample(3)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[2], b[2])
        for x, y in zip(a[1], b[1]):
            assert x["id"] == y["id"]
            np.testing.assert_array_equal(x["obs"], y["obs"])
    # Same ring position: the next insert evicts the same (oldest) item, id 2.
    for buf in (replay, restored):
        np.testing.assert_array_equal(buf.insert(items_of(1, start=7), [1.0]), [7])
        assert np.isnan(buf.get_priorities(np.array([2])))[0]
    np.testing.assert_array_equal(
        restored.state_dict()["slot_ids"], replay.state_dict()["slot_ids"]
    )
    # Stale ids stay stale after a restore.
    applied = restored.update_priorities(np.array([1, 3]), [1.0, 1.0])
    np.testing.assert_array_equal(applied, [False, True])


def test_state_dict_partial_buffer_and_pickle():
    replay = PrioritizedReplay(10, seed=8)
    replay.insert(items_of(3), np.array([1.0, 2.0, 3.0]))
    restored = PrioritizedReplay(10)
    restored.load_state_dict(pickle.loads(pickle.dumps(replay.state_dict())))
    assert len(restored) == 3
    np.testing.assert_array_equal(restored.insert(items_of(1, start=3), [1.0]), [3])
    empty = PrioritizedReplay(10)
    empty.load_state_dict(PrioritizedReplay(10).state_dict())
    assert len(empty) == 0


def test_load_state_dict_checks_capacity_and_converts_alpha():
    replay = PrioritizedReplay(4, priority_exponent=0.5)
    replay.insert(items_of(2), np.array([4.0, 9.0]))
    with pytest.raises(ValueError, match="capacity"):
        PrioritizedReplay(8).load_state_dict(replay.state_dict())
    other = PrioritizedReplay(4, priority_exponent=1.0)
    other.load_state_dict(replay.state_dict())
    np.testing.assert_allclose(other.get_priorities(np.array([0, 1])), [4.0, 9.0])


def test_tensor_priorities_feed_the_replay():
    replay = PrioritizedReplay(8, seed=9)
    ids = replay.insert(items_of(4), torch.rand(4) + 0.1)  # A tensor is fine.
    ids_sampled, _, weights = replay.sample(4)
    assert set(ids_sampled.tolist()) <= set(ids.tolist())
    applied = replay.update_priorities(ids_sampled, torch.rand(4).numpy() + 0.1)
    assert applied.all()


def test_eviction_hook_gets_each_overwritten_item_once_oldest_first():
    evicted: list[list[int]] = []
    replay = PrioritizedReplay(3, on_evict=lambda items: evicted.append([item["id"] for item in items]))
    replay.insert(items_of(3), np.ones(3))
    assert evicted == []  # filling the free slots evicts nothing
    replay.insert(items_of(2, start=3), np.ones(2))
    assert evicted == [[0, 1]]
    # Five at once into three slots: the stored 2, 3, 4 go, then the new 5 and 6 that 8 and 9 overwrite.
    replay.insert(items_of(5, start=5), np.ones(5))
    assert evicted == [[0, 1], [2, 3, 4, 5, 6]]
    assert set(count_draws(replay, 20, 3)) == {7, 8, 9}
    with pytest.raises(ValueError):
        replay.insert(items_of(1, start=10), np.array([-1.0]))
    assert len(evicted) == 2  # a refused insertion evicts nothing
