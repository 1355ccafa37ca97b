#!/usr/bin/env bash
# IMPALA on Atari Pong on Vertex AI: 1 GPU learner, 32 CPU actor replicas.
# SEED RL's gcp/train_atari.sh ran 32 n1-standard-4 workers x 20 environments (640);
# here 32 replicas x 4 actor processes x 5 environments = 640. 200M frames is the
# IMPALA paper's Atari budget. On the GPU learner the atari preset is the IMPALA paper's
# settings (seed_rl/config/presets.py: batch 32 x unroll 20, RMSprop lr 6e-4 annealed to 0, summed
# losses with TorchBeast's epsilon 0.01, the IMPALA ResNet).
# Settings: see gcp/common.sh (DRY_RUN=1 to only print).
set -euo pipefail
# shellcheck source=common.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
NUM_ACTORS=${NUM_ACTORS:-32}
ACTORS_PER_REPLICA=${ACTORS_PER_REPLICA:-4}
LEARNER_MACHINE_TYPE=${LEARNER_MACHINE_TYPE:-n1-standard-8}
ACCELERATOR_TYPE=${ACCELERATOR_TYPE:-NVIDIA_TESLA_T4}
ACCELERATOR_COUNT=${ACCELERATOR_COUNT:-1}
ACTOR_MACHINE_TYPE=${ACTOR_MACHINE_TYPE:-n1-standard-4}
start_training seed-rl-atari-pong \
  --agent=impala --env=atari:Pong --envs_per_actor=5 \
  --inference_batch_size=64 --total_environment_frames=200000000 "$@"
