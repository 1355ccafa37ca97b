"""Tests for seed_rl.core.env_state: the learner's per-environment states and unroll assembly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seed_rl.core.env_state import EnvStateTable, StepRecord, Unroll, UnrollBuilder, stack_unrolls

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


def test_new_keys_get_the_initial_state():
    table = EnvStateTable(lstm_like_state, CPU, capacity=4)
    state, index = table.gather([("a", 0), ("a", 1)])
    assert len(table) == 2
    assert index.dtype == torch.long and index.shape == (2,)
    assert len(set(index.tolist())) == 2
    assert state[0].shape == (2, 3) and state[1].shape == (2, 2, 2)
    _assert_initial(state, [0, 1])


def test_scatter_then_gather_returns_each_keys_state():
    table = EnvStateTable(lstm_like_state, CPU, capacity=8)
    keys = [(s, i) for s in range(3) for i in range(2)]
    _, index = table.gather(keys)
    table.scatter(index, _fill(len(keys), base=100.0))
    # Any order and any subset: each key gets its own state back.
    order = [keys[4], keys[0], keys[5], keys[2]]
    state, _ = table.gather(order)
    expected = [104.0, 100.0, 105.0, 102.0]
    assert state[0][:, 0].tolist() == expected
    assert state[1][:, 0, 0].tolist() == [int(v) for v in expected]


def test_gather_returns_copies():
    table = EnvStateTable(lstm_like_state, CPU, capacity=2)
    state, _ = table.gather(["k"])
    state[0].fill_(123.0)
    again, _ = table.gather(["k"])
    _assert_initial(again, [0])


def test_scatter_detaches_from_the_graph():
    table = EnvStateTable(lambda n: (torch.zeros(n, 2),), CPU, capacity=2)
    _, index = table.gather(["k"])
    value = torch.ones(1, 2, requires_grad=True) * 2
    table.scatter(index, (value,))
    state, _ = table.gather(["k"])
    assert not state[0].requires_grad
    assert state[0].tolist() == [[2.0, 2.0]]


def test_remove_frees_and_resets_the_slot():
    table = EnvStateTable(lstm_like_state, CPU, capacity=4)
    keys = ["a", "b", "c"]
    _, index = table.gather(keys)
    table.scatter(index, _fill(3, base=10.0))
    table.remove(["b", "never-added"])
    assert len(table) == 2
    state, _ = table.gather(["a", "c"])
    assert state[0][:, 0].tolist() == [10.0, 12.0]
    # A key that comes back (or a new key in the freed slot) starts from the initial state.
    state, new_index = table.gather(["b"])
    _assert_initial(state, [0])
    state, _ = table.gather(["d"])
    _assert_initial(state, [0])
    assert len(table) == 4


def test_slots_are_reused_so_memory_stays_bounded():
    table = EnvStateTable(lstm_like_state, CPU, capacity=8)
    for cycle in range(500):
        keys = [(cycle, i) for i in range(8)]  # a new stream id every reconnect
        state, index = table.gather(keys)
        _assert_initial(state, range(8))
        table.scatter(index, _fill(8, base=float(cycle)))
        table.remove(keys)
        assert len(table) == 0
    assert table.capacity == 8
    state, _ = table.gather([("last", i) for i in range(8)])
    assert state[0].shape == (8, 3)


def test_capacity_bounded_by_the_peak_not_the_total():
    table = EnvStateTable(lstm_like_state, CPU, capacity=2)
    for cycle in range(200):
        keys = [(cycle, i) for i in range(5)]
        table.gather(keys)
        table.remove(keys)
    assert table.capacity == 8  # 2 -> 4 -> 8 for a peak of 5, never more


def test_growth_beyond_the_initial_capacity_keeps_states():
    table = EnvStateTable(lstm_like_state, CPU, capacity=2)
    first = ["a", "b"]
    _, index = table.gather(first)
    table.scatter(index, _fill(2, base=50.0))
    more = [f"k{i}" for i in range(9)]
    state, index = table.gather(more)  # grows 2 -> 4 -> 8 -> 16 inside one gather
    assert table.capacity >= 11
    assert len(table) == 11
    assert len(set(index.tolist())) == 9
    _assert_initial(state, range(9))
    table.scatter(index, _fill(9, base=200.0))
    state, index = table.gather(first + more)
    assert len(set(index.tolist())) == 11
    assert state[0][:, 0].tolist() == [50.0, 51.0] + [200.0 + i for i in range(9)]


def test_model_without_recurrent_state():
    table = EnvStateTable(lambda n: (), CPU, capacity=1)
    state, index = table.gather(["a", "b", "c"])
    assert state == ()
    assert len(set(index.tolist())) == 3
    table.scatter(index, ())
    table.remove(["a", "b", "c"])
    assert len(table) == 0


# ----------------------------------------------------------------------------
# UnrollBuilder


def _step(t: int) -> StepRecord:
    return StepRecord(
        observation=np.full((2, 2), t, dtype=np.uint8),
        reward=float(t) / 2,
        done=t % 4 == 0,
        action=t % 3,
        agent_outputs={"policy_logits": np.array([t, -t], dtype=np.float32), "baseline": np.float32(t)},
        core_state=(np.full(3, 1000 + t, dtype=np.float32), np.array([t], dtype=np.int64)),
    )


def test_unrolls_have_length_plus_one_steps_with_one_step_overlap():
    length = 3
    builder = UnrollBuilder(length)
    unrolls: list[tuple[int, Unroll]] = []
    for t in range(11):
        unroll = builder.append(_step(t))
        if unroll is not None:
            unrolls.append((t, unroll))
    # Steps 0..3, 3..6, 6..9; step 10 waits for the next unroll.
    assert [t for t, _ in unrolls] == [3, 6, 9]
    assert len(builder) == 2
    for k, (_, unroll) in enumerate(unrolls):
        steps = list(range(k * length, k * length + length + 1))
        assert unroll.observation.shape == (length + 1, 2, 2)
        assert unroll.observation[:, 0, 0].tolist() == steps
        assert unroll.reward.dtype == np.float32 and unroll.reward.tolist() == [t / 2 for t in steps]
        assert unroll.done.dtype == bool and unroll.done.tolist() == [t % 4 == 0 for t in steps]
        assert unroll.action.dtype == np.int64 and unroll.action.tolist() == [t % 3 for t in steps]
        assert unroll.agent_outputs["policy_logits"].shape == (length + 1, 2)
        assert unroll.agent_outputs["policy_logits"][:, 0].tolist() == steps
        assert unroll.agent_outputs["baseline"].tolist() == steps
        # The recurrent state before the unroll's first step.
        assert unroll.initial_core_state[0].tolist() == [1000.0 + steps[0]] * 3
        assert unroll.initial_core_state[1].tolist() == [steps[0]]
    for (_, prev), (_, nxt) in zip(unrolls, unrolls[1:]):
        np.testing.assert_array_equal(prev.observation[-1], nxt.observation[0])
        assert prev.reward[-1] == nxt.reward[0]
        assert prev.done[-1] == nxt.done[0]
        assert prev.action[-1] == nxt.action[0]
        np.testing.assert_array_equal(
            prev.agent_outputs["policy_logits"][-1], nxt.agent_outputs["policy_logits"][0]
        )


def test_next_initial_state_is_the_state_stored_with_the_overlapping_step():
    builder = UnrollBuilder(2)
    records = [_step(t) for t in range(5)]
    emitted = [u for u in (builder.append(r) for r in records) if u is not None]
    assert len(emitted) == 2
    overlap = records[2]  # last step of unroll 0, first step of unroll 1
    for got, want in zip(emitted[1].initial_core_state, overlap.core_state):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(emitted[0].initial_core_state, records[0].core_state):
        np.testing.assert_array_equal(got, want)


def test_unroll_length_one():
    builder = UnrollBuilder(1)
    assert builder.append(_step(0)) is None
    first = builder.append(_step(1))
    second = builder.append(_step(2))
    assert first.observation[:, 0, 0].tolist() == [0, 1]
    assert second.observation[:, 0, 0].tolist() == [1, 2]


def test_unroll_arrays_do_not_alias_later_steps():
    builder = UnrollBuilder(1)
    observation = np.zeros(2, np.float32)
    step = StepRecord(observation, 0.0, False, 0, {}, ())
    builder.append(step)
    unroll = builder.append(StepRecord(np.ones(2, np.float32), 1.0, False, 1, {}, ()))
    observation[:] = 5  # the caller reusing its buffer must not change a finished unroll
    assert unroll.observation.tolist() == [[0.0, 0.0], [1.0, 1.0]]
    assert unroll.agent_outputs == {}
    assert unroll.initial_core_state == ()


def test_invalid_unroll_length():
    with pytest.raises(ValueError, match="unroll length"):
        UnrollBuilder(0)


def test_stack_unrolls_is_time_major():
    builders = [UnrollBuilder(3), UnrollBuilder(3)]
    unrolls = []
    for b, builder in enumerate(builders):
        for t in range(4):
            unroll = builder.append(_step(10 * b + t))
        unrolls.append(unroll)
    batch = stack_unrolls(unrolls, CPU)
    assert batch["observation"].shape == (4, 2, 2, 2)
    assert batch["observation"][:, 1, 0, 0].tolist() == [10, 11, 12, 13]
    assert batch["reward"].shape == (4, 2) and batch["reward"].dtype == torch.float32
    assert batch["done"].dtype == torch.bool
    assert batch["action"].dtype == torch.int64
    assert batch["agent_outputs"]["policy_logits"].shape == (4, 2, 2)
    assert batch["agent_outputs"]["baseline"].shape == (4, 2)
    assert batch["initial_core_state"][0].shape == (2, 3)
    assert batch["initial_core_state"][0][:, 0].tolist() == [1000.0, 1010.0]
    assert batch["initial_core_state"][1].tolist() == [[0], [10]]


@pytest.mark.parametrize("length, overlap", [(5, 3), (4, 0), (6, 6)])
def test_overlapping_sequences_start_every_period_steps(length, overlap):
    builder = UnrollBuilder(length, overlap)
    period = length + 1 - overlap
    records = [_step(t) for t in range(40)]
    emitted = [u for u in (builder.append(r) for r in records) if u is not None]
    assert len(emitted) >= 3
    for k, unroll in enumerate(emitted):
        first = k * period
        assert unroll.observation[:, 0, 0].tolist() == list(range(first, first + length + 1))
        for got, want in zip(unroll.initial_core_state, records[first].core_state):
            np.testing.assert_array_equal(got, want)


def test_overlap_out_of_range_is_refused():
    with pytest.raises(ValueError, match="overlap"):
        UnrollBuilder(3, 4)
