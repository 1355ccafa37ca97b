#!/usr/bin/env bash
# IMPALA on DeepMind Lab rooms_watermaze on Vertex AI.
# Shape and hyperparameters from SEED RL's gcp/train_dmlab_rooms_watermaze.sh: 50 workers
# x 8 actors (here 50 replicas x 8 processes x 1 environment), inference batch 64,
# batch 32, entropy 1e-5, lambda 0.99, Adam lr 1e-4 with epsilon 3.125e-7 (SEED's current
# script; older revisions had 1e-3). With Adam the IMPALA loss is mean-reduced as in SEED,
# so the epsilon means what SEED's does. These are also the dmlab preset (seed_rl/config/presets.py).
# The image needs DeepMind Lab (see docs/environments.md, "DeepMind Lab").
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
NUM_ACTORS=${NUM_ACTORS:-50}
ACTORS_PER_REPLICA=${ACTORS_PER_REPLICA:-8}
LEARNER_MACHINE_TYPE=${LEARNER_MACHINE_TYPE:-n1-standard-8}
ACCELERATOR_TYPE=${ACCELERATOR_TYPE:-NVIDIA_TESLA_T4}
ACCELERATOR_COUNT=${ACCELERATOR_COUNT:-1}
ACTOR_MACHINE_TYPE=${ACTOR_MACHINE_TYPE:-n1-standard-4}
start_training seed-rl-dmlab-rooms-watermaze \
  --agent=impala --env=dmlab:rooms_watermaze --envs_per_actor=1 \
  --inference_batch_size=64 --batch_size=32 --entropy_cost=0.00001 --vtrace_lambda=0.99 \
  --optimizer=adam --learning_rate=0.0001 --adam_epsilon=3.125e-7 "$@"
