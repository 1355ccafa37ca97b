"""How long a checkpoint stalls the training thread: written inline against written in the background.

  .venv/bin/python tools/bench_checkpoint_stall.py [--sequences=300] [--dir=/tmp]

Fills R2D2's replay (``ReplayData`` over ``PrioritizedReplay``) with
``--sequences`` synthetic Pong sequences of R2D2's default length (84x84x4
uint8 observations, 81 steps: about 2.3 MB each), then checkpoints it twice:

- inline, as the learner did before: ``state_dict()`` and ``torch.save`` on the
  training thread, which waits for all of it;
- as the learner does now: the training thread takes the snapshot
  (``state_dict()`` and cloned weights) and hands it to ``CheckpointWriter``,
  whose thread writes it.

Prints each stall of the training thread, the background write time and their ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from seed_rl.agents.r2d2.config import R2D2Config
from seed_rl.agents.r2d2.replay_data import ReplayData
from seed_rl.learner import checkpoint
from seed_rl.core.unroll import Unroll
from seed_rl.core.unroll import UnrollBatch
from seed_rl.replay.prioritized import PrioritizedReplay


def filled_replay(sequences: int, steps: int) -> ReplayData:
    config = R2D2Config()
    data = ReplayData(PrioritizedReplay(sequences, config.priority_exponent, config.importance_sampling_exponent),
                      batch_size=config.batch_size, replay_ratio=config.replay_ratio, min_size=1,
                      trained_steps_per_sequence=config.unroll_length, new_steps_per_sequence=config.sequence_period)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (steps + 64, 4, 84, 84), dtype=np.uint8)
    for i in range(sequences):
        start = i % 64
        unroll = Unroll(
            steps={"observation": frames[start:start + steps].copy(), "reward": np.zeros(steps, np.float32),
                   "done": np.zeros(steps, bool), "action": np.zeros(steps, np.int64),
                   "truncated": np.zeros(steps, bool)},
            agent_outputs={"q": rng.normal(size=(steps, 6)).astype(np.float32)},
            initial_core_state=(np.zeros(512, np.float32), np.zeros(512, np.float32)),
        )
        data.add(UnrollBatch.from_unrolls([unroll], torch.device("cpu")))
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=300)
    parser.add_argument("--dir", default=None, help="where to write the checkpoints (default: a temporary directory)")
    args = parser.parse_args()
    steps = R2D2Config().sequence_length
    data = filled_replay(args.sequences, steps)
    weights = {"w": torch.zeros(2_000_000)}  # a network's worth of parameters and optimizer state
    size_gb = args.sequences * steps * 4 * 84 * 84 / 1e9
    with tempfile.TemporaryDirectory(dir=args.dir) as inline_dir, tempfile.TemporaryDirectory(dir=args.dir) as bg_dir:
        started = time.perf_counter()
        checkpoint.save_checkpoint(inline_dir, {"agent": weights, "data": data.state_dict()}, 1)
        inline = time.perf_counter() - started

        writer = checkpoint.CheckpointWriter(bg_dir)
        started = time.perf_counter()
        writer.save({"agent": checkpoint.detached_copy(weights), "data": data.state_dict()}, 1)
        stall = time.perf_counter() - started
        writer.wait()
        background = time.perf_counter() - started
    print(f"replay of {args.sequences} sequences x {steps} steps ({size_gb:.2f} GB of observations)")
    print(f"inline checkpoint: the training thread waits {inline:.2f} s")
    print(f"background checkpoint: the training thread waits {stall * 1e3:.1f} ms; the write takes {background:.2f} s")
    print(f"stall ratio background / inline = {stall / inline:.4f}")


if __name__ == "__main__":
    main()
