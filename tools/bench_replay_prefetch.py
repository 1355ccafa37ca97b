#!/usr/bin/env python3
"""R2D2 updates per second with the next replay batch drawn on the training thread or prefetched, side by side.

    .venv/bin/python tools/bench_replay_prefetch.py [--sequences=5000] [--batch_size=64] [--step_ms 0 20 50]

Fills an R2D2 replay (``ReplayData``, the paper's 121-step sequences, each
step stored once in zstd chunks) with real Pong frames, then runs the learner
loop's pattern for ``--updates`` updates: sample a batch, a stand-in train
step, write the batch's new priorities, insert a new sequence. The stand-in step sleeps ``--step_ms`` milliseconds, as a training
thread does while a GPU computes (0: sampling alone). Printed per step time:
updates per second with ``prefetch_batches`` off and on, and their ratio; the
ideal with prefetching is ``1 / max(step, sample)``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from benchlib.pong_sequences import CONFIG, OVERLAP, Sequences, record_pong
from seed_rl.agents.r2d2.replay_data import ReplayData
from seed_rl.core.unroll import Unroll, UnrollBatch
from seed_rl.replay.prioritized import PrioritizedReplay


def filled_replay(source: Sequences, sequences: int, batch_size: int, prefetch: bool) -> ReplayData:
    replay = PrioritizedReplay(sequences, CONFIG.priority_exponent, CONFIG.importance_sampling_exponent, seed=0)
    data = ReplayData(replay, batch_size=batch_size, replay_ratio=1.0, min_size=batch_size,
                      trained_steps_per_sequence=CONFIG.unroll_length,
                      new_steps_per_sequence=CONFIG.sequence_period, sequence_overlap=OVERLAP, prefetch=prefetch)
    for unroll in source.lineages(sequences):
        data.add(_batch_of(unroll))
    return data


def _batch_of(unroll: Unroll) -> UnrollBatch:
    """A batch of one unroll, as the trajectory store hands it over."""
    column = lambda a: torch.from_numpy(np.ascontiguousarray(a)).unsqueeze(1)  # noqa: E731  [T, ...] -> [T, 1, ...]
    return UnrollBatch(steps={k: column(v) for k, v in unroll.steps.items()}, agent_outputs={},
                       initial_core_state=tuple(torch.from_numpy(np.asarray(s)).unsqueeze(0)
                                                for s in unroll.initial_core_state),
                       lineage=torch.tensor([unroll.lineage]), index=torch.tensor([unroll.index]))


def updates_per_second(data: ReplayData, source: Sequences, updates: int, step_s: float) -> float:
    rng = np.random.default_rng(0)
    arrivals = source.lineages(10**9)
    data.sample()  # the first batch (and, with prefetching, the draw of the second) before timing
    started = time.perf_counter()
    for _ in range(updates):
        _, _, ids = data.sample()
        if step_s:
            time.sleep(step_s)
        data.after_train(ids, rng.random(len(ids)) + 0.1)
        data.add(_batch_of(next(arrivals)))  # a sequence the actors brought meanwhile
    return updates / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=5000)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--updates", type=int, default=40)
    parser.add_argument("--step_ms", type=float, nargs="+", default=[0.0, 20.0, 50.0])
    parser.add_argument("--record_steps", type=int, default=8000)
    parser.add_argument("--envs", type=int, default=4)
    args = parser.parse_args()
    recordings = record_pong(args.record_steps, args.envs, seed=0)
    print(f"R2D2 replay of {args.sequences:,} sequences of {CONFIG.sequence_length} real Pong steps, "
          f"batches of {args.batch_size}, {args.updates} updates per row")
    print(f"{'step (ms)':>10} {'inline upd/s':>13} {'prefetch upd/s':>15} {'ratio':>7}")
    for step_ms in args.step_ms:
        rates = []
        for prefetch in (False, True):
            source = Sequences(recordings, seed=1)
            data = filled_replay(source, args.sequences, args.batch_size, prefetch)
            rates.append(updates_per_second(data, source, args.updates, step_ms / 1000))
        print(f"{step_ms:10.0f} {rates[0]:13.1f} {rates[1]:15.1f} {rates[1] / rates[0]:7.2f}")


if __name__ == "__main__":
    main()
