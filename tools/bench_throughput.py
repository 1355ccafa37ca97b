"""Training throughput against raw environment throughput, measured side by side.

  .venv/bin/python tools/bench_throughput.py --env=atari:Pong --num_actors=2 --envs_per_actor=16 --seconds=120

1. Raw: ``--num_actors`` processes each step ``--envs_per_actor`` preprocessed
   environments with random actions, no learner, for ``--seconds``.
2. Training: ``python -m seed_rl.train`` with the same actors and environments
   for ``--seconds`` (after a warm-up), reading frames/s from its metrics.jsonl.

Both count environment frames (agent steps times the Atari frame skip), on the
same cores. Prints both rates and training/raw.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchlib.raw_rates import raw_rates
from seed_rl.envs.factory import frames_per_step


def training_frames_per_second(args, extra: list[str]) -> tuple[float, list[dict], float]:
    logdir = tempfile.mkdtemp(prefix="bench_train_")
    command = [
        sys.executable, "-m", "seed_rl.train",
        f"--env={args.env}", f"--agent={args.agent}",
        f"--num_actors={args.num_actors}", f"--envs_per_actor={args.envs_per_actor}",
        f"--logdir={logdir}", "--total_environment_frames=10000000000",
        "--log_interval_s=5", "--checkpoint_interval_s=100000", *extra,
    ]
    # NAME=value words of a variant are environment variables of that run (e.g. OMP_WAIT_POLICY=PASSIVE).
    environment = dict(os.environ)
    for word in [w for w in command if "=" in w and not w.startswith("-")]:
        command.remove(word)
        name, value = word.split("=", 1)
        environment[name] = value
    print("running:", " ".join(command), flush=True)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=environment)
    time.sleep(args.warmup_seconds)
    cpu_start, wall_start = _process_cpu_seconds(process.pid), time.monotonic()
    time.sleep(args.seconds)
    learner_share = (_process_cpu_seconds(process.pid) - cpu_start) / ((time.monotonic() - wall_start) * os.cpu_count())
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    with open(os.path.join(logdir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    if len(records) < 3:
        raise SystemExit(f"training wrote only {len(records)} summaries; stderr:\n{stderr[-3000:]}")
    # Drop the warm-up summaries, then rate = frames over the time the summaries span.
    measured = records[max(1, int(args.warmup_seconds // 5)) :]
    elapsed = sum((b["frames"] - a["frames"]) / b["fps"] for a, b in zip(measured, measured[1:]) if b["fps"] > 0)
    return (measured[-1]["frames"] - measured[0]["frames"]) / elapsed, measured, learner_share


def _process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (its threads, not its children), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="atari:Pong")
    parser.add_argument("--agent", default="impala")
    parser.add_argument("--num_actors", type=int, default=2)
    parser.add_argument("--envs_per_actor", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--warmup_seconds", type=float, default=30.0)
    parser.add_argument("--variant", action="append", default=[],
                        help="train flags (space-separated) for one training run, and NAME=value environment "
                             "variables; repeat to compare variants against the same raw rate, e.g. "
                             "--variant=--transport=grpc --variant='--transport=shm OMP_WAIT_POLICY=PASSIVE'")
    args, extra = parser.parse_known_args()
    frame_skip = frames_per_step(args.env)

    raw = raw_rates(args.env, args.num_actors, args.envs_per_actor, args.seconds, frame_skip)[0]
    print(f"raw env frames/s ({args.num_actors} processes x {args.envs_per_actor} envs, random actions): {raw:,.0f}", flush=True)
    results = []
    for variant in args.variant or [""]:
        trained, records, learner_share = training_frames_per_second(args, extra + variant.split())
        batch = np.mean([r["inference_batch_size"] for r in records])
        results.append((variant or "(defaults)", trained, batch, learner_share))
        print(f"training frames/s ({args.agent} {variant}, same actors, learner on the same machine): {trained:,.0f}")
        print(f"mean inference batch: {batch:.1f} environments")
        print(f"learner process: {learner_share:.0%} of the machine's CPU time (actors are the rest)")
        print(f"ratio training/raw: {trained / raw:.3f}", flush=True)
    if len(results) > 1:
        print(f"{'variant':>40} {'frames/s':>9} {'/ raw':>6} {'batch':>6} {'learner CPU':>12}")
        for variant, trained, batch, share in results:
            print(f"{variant:>40} {trained:9,.0f} {trained / raw:6.3f} {batch:6.1f} {share:12.0%}")
    print(f"cpu count: {os.cpu_count()}")


if __name__ == "__main__":
    main()
