#!/usr/bin/env bash
# One prepared run for a GPU machine: the training step and inference forward in
# fp32 against bf16 (and compiled), the learner's capacity with the IMPALA deep
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

device=cpu
"$python" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' && device=cuda

echo "== training step and inference forward, IMPALA deep ResNet at IMPALA's batch (32 x 20): fp32 against bf16, eager against compiled"
"$python" tools/bench_train_step.py --device="$device" --torso=impala_deep --batch_size=32 --inference_batch=256 \
  --variants=fp32,bf16,bf16+compile --rounds=5 --steps=10
echo "== the same for R2D2 (Atari preset torso, batch 64 sequences of 40 + 80 + 1 steps)"
"$python" tools/bench_train_step.py --device="$device" --agent=r2d2 --batch_size=64 --inference_batch=256 \
  --variants=fp32,bf16 --rounds=3 --steps=3

echo "== learner capacity: synthetic Pong actors, IMPALA deep ResNet"
"$python" tools/bench_inference.py --torso=impala_deep --actors="$actors" --envs_per_actor=32 \
  --seconds="$seconds" --warmup_seconds=10 --torch_threads=0

echo "== real Pong actors against the learner (learning off)"
"$python" tools/bench_inference.py --mode=pong --torso=impala_deep --actors="$actors" --envs_per_actor=16 \
  --seconds="$seconds" --torch_threads=0

echo "== Pong training, IMPALA deep ResNet (the paper's settings on a GPU learner) against raw env frames/s"
"$python" tools/bench_throughput.py --env=atari:Pong --torso=impala_deep --num_actors="$actors" --envs_per_actor=16 \
  --seconds="$seconds" --warmup_seconds=20
