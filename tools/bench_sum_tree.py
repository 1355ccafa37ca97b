#!/usr/bin/env python3
"""Benchmarks the C++ sum-tree against the vectorised numpy one, in one run.

Both trees get the same capacity (default 1,000,000), the same initial
priorities (written with batched updates) and then the same sequence of
batched ``sample`` and ``update`` calls for each batch size. The numpy
baseline (``seed_rl.replay.NumpySumTree``) is vectorised over the batch: one
numpy operation per tree level for both the descent and the propagation, no
per-element Python loop. Each measurement is the best of ``--repeats`` runs of
``--iters`` calls (best-of, to be robust to other load on the machine), and
the two trees are checked to return identical samples and hold identical
priorities.

    .venv/bin/python tools/bench_sum_tree.py [--capacity N] [--batch-sizes 64 512]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from seed_rl.replay import NumpySumTree, SumTree


def best_time(fn, calls: list[tuple], repeats: int) -> float:
    """Best (smallest) wall time in seconds of running ``fn(*args)`` for all calls."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for args in calls:
            fn(*args)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--capacity", type=int, default=1_000_000)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 512])
    parser.add_argument("--iters", type=int, default=300, help="calls per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs; the best is kept")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    cpp, ref = SumTree(args.capacity), NumpySumTree(args.capacity)
    initial = rng.random(args.capacity) + 1e-3
    chunk = 1 << 16
    for name, tree in (("cpp", cpp), ("numpy", ref)):
        start = time.perf_counter()
        for lo in range(0, args.capacity, chunk):
            indices = np.arange(lo, min(lo + chunk, args.capacity))
            tree.update(indices, initial[indices])
        elapsed = time.perf_counter() - start
        print(f"fill {name:>5}: {args.capacity:,} priorities in {elapsed:.3f} s")
    assert cpp.total() == ref.total()

    print(
        f"capacity {args.capacity:,}, {args.iters} calls per run, best of {args.repeats} runs; "
        f"numpy {np.__version__}, Python {platform.python_version()}, {platform.machine()}"
    )
    header = (
        f"{'op':>6} {'batch':>5} | {'C++ calls/s':>12} {'numpy calls/s':>14} | "
        f"{'C++ items/s':>12} {'numpy items/s':>14} | {'speed-up':>8}"
    )
    print(header)
    print("-" * len(header))
    for batch in args.batch_sizes:
        # sample: targets uniform over [0, total).
        total = cpp.total()
        sample_calls = [(rng.random(batch) * total,) for _ in range(args.iters)]
        for (targets,) in sample_calls[:10]:
            np.testing.assert_array_equal(cpp.sample(targets), ref.sample(targets))
        # update: random leaves (repeats possible) with fresh priorities.
        update_calls = [
            (rng.integers(0, args.capacity, size=batch), rng.random(batch) + 1e-3)
            for _ in range(args.iters)
        ]
        for op, calls in (("sample", sample_calls), ("update", update_calls)):
            t_cpp = best_time(getattr(cpp, op), calls, args.repeats)
            t_ref = best_time(getattr(ref, op), calls, args.repeats)
            calls_cpp, calls_ref = args.iters / t_cpp, args.iters / t_ref
            print(
                f"{op:>6} {batch:>5} | {calls_cpp:>12,.0f} {calls_ref:>14,.0f} | "
                f"{calls_cpp * batch:>12,.0f} {calls_ref * batch:>14,.0f} | {t_ref / t_cpp:>7.1f}x"
            )
        # Both received the same updates: they must agree exactly.
        np.testing.assert_array_equal(cpp.to_array(), ref.to_array())
        assert cpp.total() == ref.total()
    print("check: identical samples and priorities in both trees")


if __name__ == "__main__":
    main()
