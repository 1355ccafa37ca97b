#!/usr/bin/env bash
# One prepared run for a GPU machine: the learner's capacity with the IMPALA deep
# ResNet on the GPU, then a short Pong training with the paper's network, and the
# ratios they print. Paste its output into docs/results.md with the GPU's name.
#
#   tools/bench_gpu.sh [SECONDS]      # default 30 s per measurement
#
# Runs on a CPU-only machine too (everything lands on the CPU), for a dry run.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
python=${PYTHON:-.venv/bin/python}
[ -x "$python" ] || python=python3
cores=$(nproc)
actors=$(( cores > 2 ? cores - 1 : 1 ))

echo "== machine"
"$python" - <<'PY'
import os, torch
print(f"torch {torch.__version__}, {os.cpu_count()} cores,",
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")
PY

echo "== learner capacity: synthetic Pong actors, IMPALA deep ResNet"
"$python" tools/bench_inference.py --torso=impala_deep --actors="$actors" --envs_per_actor=32 \
  --seconds="$seconds" --warmup_seconds=10 --torch_threads=0

echo "== real Pong actors against the learner (learning off)"
"$python" tools/bench_inference.py --mode=pong --torso=impala_deep --actors="$actors" --envs_per_actor=16 \
  --seconds="$seconds" --torch_threads=0

echo "== Pong training, IMPALA deep ResNet (the paper's settings on a GPU learner)"
logdir=$(mktemp -d)
trap 'rm -rf "$logdir"' EXIT
timeout $(( seconds * 4 + 120 )) "$python" -m seed_rl.train --env=atari:Pong --torso=impala_deep \
  --num_actors="$actors" --envs_per_actor=16 --logdir="$logdir" \
  --total_environment_frames=$(( 20000 * seconds * 4 )) --log_interval_s=10 2>&1 | grep -E "frames|preset|training" || true
"$python" - "$logdir" "$actors" "$seconds" <<'PY'
import json, sys
sys.path.insert(0, "tools")
from bench_throughput import raw_rates
logdir, actors, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
rows = [json.loads(line) for line in open(f"{logdir}/metrics.jsonl")]
steady = rows[len(rows) // 2:]
fps = sum(r["fps"] for r in steady) / len(steady)
raw = raw_rates("atari:Pong", actors, 16, min(seconds, 10), frame_skip=4)[0]
print(f"training frames/s {fps:,.0f}; raw Pong frames/s of {actors} processes {raw:,.0f}; ratio {fps / raw:.3f}")
PY
