#!/usr/bin/env bash
# Shared by gcp/train_*.sh: builds the images on Cloud Build and submits a Vertex AI
# custom job (one GPU learner replica, NUM_ACTORS CPU actor replicas) through
# `python -m seed_rl.launch.vertex`. Settings, as environment variables:
#   PROJECT     Google Cloud project (default: gcloud config get-value project)
#   REGION      Vertex AI, Artifact Registry and Cloud Build region (us-central1)
#   REPOSITORY  Artifact Registry Docker repository, created if missing (seed-rl)
#   BUCKET      gs://BUCKET for credentials, summaries, checkpoints, created if missing
#               (gs://PROJECT-seed-rl)
#   TAG         image tag (default: the time of the build)
#   IMAGE_VARIANT  set by a script whose environment the default images lack: "football"
#               builds and runs the actor-football/learner-football Dockerfile targets,
#               pushed as actor-football:TAG and learner-football:TAG (default: none,
#               the Atari-only actor and learner images)
#   NUM_ACTORS, ACTORS_PER_REPLICA, LEARNER_MACHINE_TYPE, ACCELERATOR_TYPE,
#   ACCELERATOR_COUNT, ACTOR_MACHINE_TYPE   override the script's job shape
#   SKIP_BUILD=1  reuse images already pushed with TAG
#   DRY_RUN=1     print the gcloud commands and the job; run and submit nothing
#   PYTHON      a Python with seed_rl[gcp] installed (default: .venv/bin/python, else python3)
set -euo pipefail

GCP_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$GCP_DIR")"

# Prints a command, then runs it unless DRY_RUN=1.
run() {
  echo "+ $*" >&2
  if [ "${DRY_RUN:-0}" != 1 ]; then
    "$@"
  fi
}

# start_training JOB_NAME_PREFIX [train flags...]: the scripts set NUM_ACTORS etc. first.
start_training() {
  local prefix=$1
  shift
  local project=${PROJECT:-}
  if [ -z "$project" ]; then
    project=$(gcloud config get-value project 2>/dev/null || true)
  fi
  if [ -z "$project" ]; then
    echo "error: no Google Cloud project: set PROJECT=... or run 'gcloud config set project ID'" >&2
    exit 2
  fi
  local region=${REGION:-us-central1}
  local repository=${REPOSITORY:-seed-rl}
  local bucket=${BUCKET:-gs://${project}-seed-rl}
  local tag=${TAG:-$(date -u +%Y%m%d-%H%M%S)}
  local job_name
  job_name="${prefix}-$(date -u +%Y%m%d-%H%M%S)"
  local registry="${region}-docker.pkg.dev/${project}/${repository}"
  local actor_target=actor learner_target=learner
  case "${IMAGE_VARIANT:-}" in
    "") ;;
    football) actor_target=actor-football learner_target=learner-football ;;
    *) echo "error: unknown IMAGE_VARIANT '${IMAGE_VARIANT}'; choose football or leave it unset" >&2
       exit 2 ;;
  esac
  local actor_image="${registry}/${actor_target}:${tag}"
  local learner_image="${registry}/${learner_target}:${tag}"
  local python=${PYTHON:-}
  if [ -z "$python" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then python="$ROOT/.venv/bin/python"; else python=python3; fi
  fi

  if [ "${SKIP_BUILD:-0}" != 1 ]; then
    if [ "${DRY_RUN:-0}" = 1 ] || ! gcloud artifacts repositories describe "$repository" \
        --project="$project" --location="$region" >/dev/null 2>&1; then
      run gcloud artifacts repositories create "$repository" --project="$project" \
        --location="$region" --repository-format=docker
    fi
    run gcloud builds submit "$ROOT" --project="$project" --region="$region" \
      --config="$GCP_DIR/cloudbuild.yaml" \
      --substitutions="_ACTOR_IMAGE=${actor_image},_LEARNER_IMAGE=${learner_image},_ACTOR_TARGET=${actor_target},_LEARNER_TARGET=${learner_target}"
  fi
  if [ "${DRY_RUN:-0}" = 1 ] || ! gcloud storage buckets describe "$bucket" --project="$project" >/dev/null 2>&1; then
    run gcloud storage buckets create "$bucket" --project="$project" --location="$region" \
      --uniform-bucket-level-access
  fi

  local dry=()
  if [ "${DRY_RUN:-0}" = 1 ]; then dry=(--dry_run); fi
  echo "+ $python -m seed_rl.launch.vertex ... (job $job_name)" >&2
  (cd "$ROOT" && "$python" -m seed_rl.launch.vertex "${dry[@]}" \
    --project="$project" --region="$region" \
    --learner_image="$learner_image" --actor_image="$actor_image" \
    --output_dir="${bucket}/${job_name}" --job_name="$job_name" \
    --num_actors="${NUM_ACTORS}" --actors_per_replica="${ACTORS_PER_REPLICA}" \
    --learner_machine_type="${LEARNER_MACHINE_TYPE}" --accelerator_type="${ACCELERATOR_TYPE}" \
    --accelerator_count="${ACCELERATOR_COUNT}" --actor_machine_type="${ACTOR_MACHINE_TYPE}" \
    -- "$@")
}
