"""The C++ sum-tree (seed_rl._ops via seed_rl.replay.SumTree) and its numpy twin."""

from __future__ import annotations

import copy
import pickle
import threading

import numpy as np
import pytest

from seed_rl.replay import NumpySumTree, SumTree

IMPLS = [SumTree, NumpySumTree]
ids = ["cpp", "numpy"]

# 0.9999 quantiles of the chi-square distribution, by degrees of freedom.
CHI2_9999 = {1: 15.137, 2: 18.421, 3: 21.108, 4: 23.513, 5: 25.745, 6: 27.856, 7: 29.877, 8: 31.828}


def chi_square(counts: np.ndarray, probabilities: np.ndarray) -> tuple[float, int]:
    """Pearson's statistic over the cells with positive probability, and its dof."""
    positive = probabilities > 0
    expected = counts.sum() * probabilities[positive]
    stat = float((((counts[positive] - expected) ** 2) / expected).sum())
    return stat, int(positive.sum()) - 1


def draw(tree, num: int, rng: np.random.Generator) -> np.ndarray:
    targets = rng.random(num) * tree.total()
    return np.bincount(tree.sample(targets), minlength=tree.capacity)


@pytest.mark.parametrize("impl", IMPLS, ids=ids)
def test_sampling_frequencies_match_priorities(impl):
    priorities = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 0.0, 5.0, 0.5, 7.0, 0.0])
    tree = impl(10)
    tree.update(np.arange(10), priorities)
    assert tree.total() == pytest.approx(priorities.sum())
    counts = draw(tree, 200_000, np.random.default_rng(0))
    assert counts[priorities == 0].sum() == 0
    stat, dof = chi_square(counts, priorities / priorities.sum())
    assert dof == 6 and stat < CHI2_9999[dof]
    # The largest deviation of a frequency is within ~5 standard errors.
    freq = counts / counts.sum()
    assert np.max(np.abs(freq - priorities / priorities.sum())) < 0.006


@pytest.mark.parametrize("impl", IMPLS, ids=ids)
def test_updates_change_frequencies(impl):
    tree = impl(6)
    tree.update(np.arange(6), np.ones(6))
    tree.update(np.array([0, 5, 2]), np.array([0.0, 6.0, 3.0]))
    expected = np.array([0.0, 1.0, 3.0, 1.0, 1.0, 6.0])
    np.testing.assert_array_equal(tree.get(np.arange(6)), expected)
    assert tree.total() == 12.0
    counts = draw(tree, 100_000, np.random.default_rng(1))
    assert counts[0] == 0
    stat, dof = chi_square(counts, expected / expected.sum())
    assert stat < CHI2_9999[dof]


def test_sample_intervals_exact():
    tree = SumTree(5)
    tree.update(np.array([0, 2, 4]), np.array([1.0, 2.0, 3.0]))
    # Intervals: leaf 0 [0, 1), leaf 2 [1, 3), leaf 4 [3, 6]; empty leaves never.
    targets = np.array([0.0, 0.999, 1.0, 2.5, 3.0, 5.999, 6.0])
    np.testing.assert_array_equal(tree.sample(targets), [0, 0, 2, 2, 4, 4, 4])
    assert tree.sample(np.array([])).shape == (0,)
    assert tree.sample(np.array([1.5])).dtype == np.int64


@pytest.mark.parametrize("capacity", [1, 2, 3, 7, 64, 1000])
def test_cpp_matches_numpy_on_random_ops(capacity):
    rng = np.random.default_rng(capacity)
    cpp, ref = SumTree(capacity), NumpySumTree(capacity)
    for step in range(200):
        n = int(rng.integers(0, 40))
        indices = rng.integers(0, capacity, size=n)  # Repeats included.
        scale = 10.0 ** rng.integers(-300, 300) if step % 10 == 0 else 1.0
        priorities = rng.random(n) * scale
        priorities[rng.random(n) < 0.3] = 0.0
        cpp.update(indices, priorities)
        ref.update(indices, priorities)
        np.testing.assert_array_equal(cpp.to_array(), ref.to_array())
        assert cpp.total() == ref.total()
        probe = rng.integers(0, capacity, size=10)
        np.testing.assert_array_equal(cpp.get(probe), ref.get(probe))
        if cpp.total() > 0:
            total = cpp.total()
            targets = np.concatenate(
                [rng.random(50) * total, [0.0, total, np.nextafter(total, 0.0)]]
            )
            got = cpp.sample(targets)
            np.testing.assert_array_equal(got, ref.sample(targets))
            assert np.all(cpp.get(got) > 0)


def test_repeated_index_keeps_last_priority():
    for impl in IMPLS:
        tree = impl(4)
        tree.update(np.array([1, 2, 1, 1]), np.array([5.0, 1.0, 7.0, 2.0]))
        np.testing.assert_array_equal(tree.get(np.arange(4)), [0.0, 2.0, 1.0, 0.0])
        assert tree.total() == 3.0


@pytest.mark.parametrize("impl", IMPLS, ids=ids)
def test_round_off_never_returns_an_empty_leaf(impl):
    """Targets at (or rounding past) the top never land on zero or padding leaves."""
    rng = np.random.default_rng(7)
    for trial in range(300):
        capacity = int(rng.integers(1, 300))
        tree = impl(capacity)
        priorities = rng.choice([0.1, 0.3, 1e-17, 1e16, 0.7], size=capacity)
        priorities[rng.random(capacity) < 0.5] = 0.0
        if trial % 3 == 0:
            priorities[capacity // 2 :] = 0.0  # A long run of empty leaves at the end.
        if not priorities.any():
            priorities[0] = 0.1
        tree.update(np.arange(capacity), priorities)
        total = tree.total()
        targets = np.array([total, np.nextafter(total, 0.0), total * (1 - 1e-16), 0.0])
        got = tree.sample(targets)
        assert np.all((got >= 0) & (got < capacity))
        assert np.all(priorities[got] > 0), (trial, got, priorities[got])


@pytest.mark.parametrize("impl", IMPLS, ids=ids)
@pytest.mark.parametrize(
    "indices, priorities, message",
    [
        ([0, 1, 8], [1.0, 1.0, 1.0], "index 8 (position 2) is out of range [0, 8)"),
        ([0, -1], [1.0, 1.0], "index -1 (position 1) is out of range"),
        ([0, 3], [1.0, -0.5], "priority -0.5 (position 1, index 3) is negative"),
        ([0, 4], [1.0, np.nan], "priority nan (position 1, index 4) is NaN"),
        ([5, 0], [np.inf, 1.0], "priority inf (position 0, index 5) is infinite"),
        ([2, 1], [1.0, -np.inf], "is infinite"),
    ],
)
def test_bad_updates_raise_and_leave_tree_unchanged(impl, indices, priorities, message):
    tree = impl(8)
    tree.update(np.arange(8), np.arange(8, dtype=np.float64))
    before, total = tree.to_array(), tree.total()
    with pytest.raises(ValueError) as error:
        tree.update(np.array(indices), np.array(priorities))
    assert message in str(error.value)
    np.testing.assert_array_equal(tree.to_array(), before)
    assert tree.total() == total
    np.testing.assert_array_equal(tree.sample(np.array([0.5, 27.5])), [1, 7])


@pytest.mark.parametrize("impl", IMPLS, ids=ids)
def test_overflowing_total_raises_and_leaves_tree_unchanged(impl):
    tree = impl(4)
    tree.update(np.array([0, 1]), np.array([1.0, 2.0]))
    with pytest.raises(OverflowError):
        tree.update(np.array([2, 3]), np.array([1e308, 1e308]))
    np.testing.assert_array_equal(tree.to_array(), [1.0, 2.0, 0.0, 0.0])
    assert tree.total() == 3.0


@pytest.mark.parametrize("impl", IMPLS, ids=ids)
def test_bad_arguments(impl):
    with pytest.raises(ValueError, match="capacity"):
        impl(0)
    tree = impl(4)
    with pytest.raises(ValueError, match="total priority is 0"):
        tree.sample(np.array([0.0]))
    tree.update(np.array([0, 1]), np.array([1.0, 2.0]))
    for target in (3.0000001, -1e-9, np.nan, np.inf):
        with pytest.raises(ValueError, match="outside"):
            tree.sample(np.array([0.5, target]))
    with pytest.raises(ValueError, match="out of range"):
        tree.get(np.array([4]))
    with pytest.raises(ValueError, match="2 indices but 1 priorities"):
        tree.update(np.array([0, 1]), np.array([1.0]))
    with pytest.raises(TypeError, match="dtype"):
        tree.update(np.array([0.0]), np.array([1.0]))  # No silent float truncation.
    with pytest.raises(ValueError, match="1-D"):
        tree.get(np.zeros((2, 2), dtype=np.int64))
    # Plain sequences and other int/float dtypes are fine.
    tree.update([2], [np.float32(4.0)])
    tree.update(np.array([3], dtype=np.int32), np.array([1], dtype=np.int64))
    np.testing.assert_array_equal(tree.get([0, 1, 2, 3]), [1.0, 2.0, 4.0, 1.0])
    tree.update([], [])


def test_checkpoint_round_trips():
    rng = np.random.default_rng(3)
    tree = SumTree(1000)
    tree.update(np.arange(1000), rng.random(1000))
    leaves = tree.to_array()
    assert leaves.dtype == np.float64 and leaves.shape == (1000,)
    targets = rng.random(100) * tree.total()
    for restored in (
        SumTree.from_array(leaves),
        pickle.loads(pickle.dumps(tree)),
        copy.deepcopy(tree),
    ):
        assert restored.capacity == 1000
        assert restored.total() == tree.total()
        np.testing.assert_array_equal(restored.to_array(), leaves)
        np.testing.assert_array_equal(restored.sample(targets), tree.sample(targets))
    ref = NumpySumTree.from_array(leaves)
    assert ref.total() == tree.total()
    np.testing.assert_array_equal(ref.sample(targets), tree.sample(targets))
    with pytest.raises(ValueError, match="negative"):
        SumTree.from_array(np.array([1.0, -1.0]))


def test_concurrent_use_from_threads():
    """The loops run without the GIL; the tree's mutex keeps them consistent."""
    capacity, threads = 4096, 4
    tree = SumTree(capacity)
    expected = np.zeros(capacity)

    errors = []

    def work(k: int) -> None:
        try:
            rng = np.random.default_rng(k)
            mine = np.arange(k, capacity, threads)
            for _ in range(50):
                values = rng.random(mine.size)
                tree.update(mine, values)
                # Other threads may shrink the total after it is read: then
                # the sample is refused as a whole, never half done.
                try:
                    got = tree.sample(rng.random(256) * tree.total())
                except ValueError as error:
                    assert "outside" in str(error)
                else:
                    assert np.all((got >= 0) & (got < capacity))
            expected[mine] = values
        except BaseException as error:  # Surface failures in the main thread.
            errors.append(error)

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors, errors
    np.testing.assert_array_equal(tree.to_array(), expected)
    assert tree.total() == pytest.approx(expected.sum())
