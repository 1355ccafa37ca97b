"""Tests for seed_rl.learner.env_state: the learner's per-environment recurrent states."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seed_rl.learner.env_state import EnvStateTable

CPU = torch.device("cpu")


def lstm_like_state(n: int) -> tuple[torch.Tensor, ...]:
    """Two state tensors with a non-zero initial value, so a fresh slot is recognisable."""
    return (torch.full((n, 3), -1.0), torch.full((n, 2, 2), 7, dtype=torch.int64))


def _fill(n: int, base: float) -> tuple[torch.Tensor, ...]:
    values = torch.arange(n, dtype=torch.float32) + base
    return (values[:, None].repeat(1, 3), values.to(torch.int64)[:, None, None].repeat(1, 2, 2))


def _assert_initial(state, rows):
    for row in rows:
        assert torch.equal(state[0][row], torch.full((3,), -1.0))
        assert torch.equal(state[1][row], torch.full((2, 2), 7, dtype=torch.int64))


# ----------------------------------------------------------------------------
# EnvStateTable



def _gather(table: EnvStateTable, keys: list) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """The states of ``keys`` (new keys get the initial state) and their slots, as inference looks them up."""
    index = torch.from_numpy(table.slots(keys))
    return table.states(index), index

def test_new_keys_get_the_initial_state():
    table = EnvStateTable(lstm_like_state, CPU, capacity=4)
    state, index = _gather(table, [("a", 0), ("a", 1)])
    assert len(table) == 2
    assert index.dtype == torch.long and index.shape == (2,)
    assert len(set(index.tolist())) == 2
    assert state[0].shape == (2, 3) and state[1].shape == (2, 2, 2)
    _assert_initial(state, [0, 1])


def test_scatter_then_states_return_each_keys_state():
    table = EnvStateTable(lstm_like_state, CPU, capacity=8)
    keys = [(s, i) for s in range(3) for i in range(2)]
    _, index = _gather(table, keys)
    table.scatter(index, _fill(len(keys), base=100.0))
    # Any order and any subset: each key gets its own state back.
    order = [keys[4], keys[0], keys[5], keys[2]]
    state, _ = _gather(table, order)
    expected = [104.0, 100.0, 105.0, 102.0]
    assert state[0][:, 0].tolist() == expected
    assert state[1][:, 0, 0].tolist() == [int(v) for v in expected]


def test_states_are_copies():
    table = EnvStateTable(lstm_like_state, CPU, capacity=2)
    state, _ = _gather(table, ["k"])
    state[0].fill_(123.0)
    again, _ = _gather(table, ["k"])
    _assert_initial(again, [0])


def test_scatter_detaches_from_the_graph():
    table = EnvStateTable(lambda n: (torch.zeros(n, 2),), CPU, capacity=2)
    _, index = _gather(table, ["k"])
    value = torch.ones(1, 2, requires_grad=True) * 2
    table.scatter(index, (value,))
    state, _ = _gather(table, ["k"])
    assert not state[0].requires_grad
    assert state[0].tolist() == [[2.0, 2.0]]


def test_remove_frees_and_resets_the_slot():
    table = EnvStateTable(lstm_like_state, CPU, capacity=4)
    keys = ["a", "b", "c"]
    _, index = _gather(table, keys)
    table.scatter(index, _fill(3, base=10.0))
    table.remove(["b", "never-added"])
    assert len(table) == 2
    state, _ = _gather(table, ["a", "c"])
    assert state[0][:, 0].tolist() == [10.0, 12.0]
    # A key that comes back (or a new key in the freed slot) starts from the initial state.
    state, new_index = _gather(table, ["b"])
    _assert_initial(state, [0])
    state, _ = _gather(table, ["d"])
    _assert_initial(state, [0])
    assert len(table) == 4


def test_slots_are_reused_so_memory_stays_bounded():
    table = EnvStateTable(lstm_like_state, CPU, capacity=8)
    for cycle in range(500):
        keys = [(cycle, i) for i in range(8)]  # a new stream id every reconnect
        state, index = _gather(table, keys)
        _assert_initial(state, range(8))
        table.scatter(index, _fill(8, base=float(cycle)))
        table.remove(keys)
        assert len(table) == 0
    assert table.capacity == 8
    state, _ = _gather(table, [("last", i) for i in range(8)])
    assert state[0].shape == (8, 3)


def test_capacity_bounded_by_the_peak_not_the_total():
    table = EnvStateTable(lstm_like_state, CPU, capacity=2)
    for cycle in range(200):
        keys = [(cycle, i) for i in range(5)]
        _gather(table, keys)
        table.remove(keys)
    assert table.capacity == 8  # 2 -> 4 -> 8 for a peak of 5, never more


def test_growth_beyond_the_initial_capacity_keeps_states():
    table = EnvStateTable(lstm_like_state, CPU, capacity=2)
    first = ["a", "b"]
    _, index = _gather(table, first)
    table.scatter(index, _fill(2, base=50.0))
    more = [f"k{i}" for i in range(9)]
    state, index = _gather(table, more)  # grows 2 -> 4 -> 8 -> 16 inside one gather
    assert table.capacity >= 11
    assert len(table) == 11
    assert len(set(index.tolist())) == 9
    _assert_initial(state, range(9))
    table.scatter(index, _fill(9, base=200.0))
    state, index = _gather(table, first + more)
    assert len(set(index.tolist())) == 11
    assert state[0][:, 0].tolist() == [50.0, 51.0] + [200.0 + i for i in range(9)]


def test_model_without_recurrent_state():
    table = EnvStateTable(lambda n: (), CPU, capacity=1)
    state, index = _gather(table, ["a", "b", "c"])
    assert state == ()
    assert len(set(index.tolist())) == 3
    table.scatter(index, ())
    table.remove(["a", "b", "c"])
    assert len(table) == 0


def test_compaction_keeps_live_states_and_returns_to_the_initial_capacity():
    table = EnvStateTable(lstm_like_state, CPU, capacity=4)
    slots = table.slots([("s", i) for i in range(20)])
    index = torch.from_numpy(slots)
    table.scatter(index, (torch.arange(20.0).unsqueeze(1).repeat(1, 3), torch.zeros(20, 2, 2, dtype=torch.int64)))
    assert table.capacity == 32 and table.compaction() is None  # most still live
    table.remove([("s", i) for i in range(20) if i not in (3, 17)])
    moved = table.compaction()
    assert table.capacity == 4 and len(table) == 2
    assert sorted(moved[moved >= 0].tolist()) == [0, 1]
    kept = table.slots([("s", 3), ("s", 17)])
    assert kept.tolist() == [moved[slots[3]], moved[slots[17]]]
    assert table.states(torch.from_numpy(kept))[0][:, 0].tolist() == [3.0, 17.0]
    fresh = table.slots([("new", 0), ("new", 1), ("new", 2)])  # grows again from the small table
    assert len(set(fresh.tolist()) | set(kept.tolist())) == 5
