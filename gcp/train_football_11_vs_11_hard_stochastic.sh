#!/usr/bin/env bash
# IMPALA (V-trace) on Google Research Football 11_vs_11_hard_stochastic on Vertex AI.
# Shape and hyperparameters from SEED RL's gcp/train_football_scoring.sh: 25 workers x 8
# actors (here 25 replicas x 8 processes x 1 environment), inference batch 64, batch 32,
# unroll 32, discount 0.997, lambda 0.9, entropy 3.19e-5, Adam lr 5.53e-5 (on SEED's
# mean-reduced loss, as --optimizer=adam takes it here), 500M frames.
# Builds and runs the Football images (docker/Dockerfile targets actor-football and
# learner-football: the Atari images plus gfootball 2.10.2 and the SDL2/Boost/EGL runtime
# libraries; docs/distributed.md says what was checked).
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
IMAGE_VARIANT=football
NUM_ACTORS=${NUM_ACTORS:-25}
ACTORS_PER_REPLICA=${ACTORS_PER_REPLICA:-8}
LEARNER_MACHINE_TYPE=${LEARNER_MACHINE_TYPE:-n1-standard-8}
ACCELERATOR_TYPE=${ACCELERATOR_TYPE:-NVIDIA_TESLA_T4}
ACCELERATOR_COUNT=${ACCELERATOR_COUNT:-1}
ACTOR_MACHINE_TYPE=${ACTOR_MACHINE_TYPE:-n1-standard-4}
start_training seed-rl-football-11v11-hard \
  --agent=impala --env=football:11_vs_11_hard_stochastic --envs_per_actor=1 \
  --inference_batch_size=64 --batch_size=32 --unroll_length=32 --discount=0.997 --vtrace_lambda=0.9 \
  --entropy_cost=0.000031948327487872845 --optimizer=adam --learning_rate=0.00005533923433816456 \
  --total_environment_frames=500000000 "$@"
