#!/usr/bin/env bash
# Train on this machine: the learner and its actors as local processes.
#
#   ./run_local.sh atari [--game=Breakout] [train flags...]   # Atari, Pong by default
#   ./run_local.sh minatar [--game=SpaceInvaders] [flags...]  # MinAtar, Breakout by default
#   ./run_local.sh football [--scenario=X] [train flags...]   # academy_empty_goal_close by default
#   ./run_local.sh gym CartPole-v1 [train flags...]           # any gymnasium id
#   ./run_local.sh dmlab [--level=rooms_watermaze] [train flags...]  # DeepMind Lab (engine built separately)
#   ./run_local.sh atari --learners=2 [train flags...]        # 2 data-parallel learner ranks (one per GPU)
#
# Creates or updates the virtualenv .venv (see tools/setup_venv.sh), then runs
# python -m seed_rl.train. Ctrl-C stops every process and writes a checkpoint;
# running the same command again resumes from it.
set -euo pipefail
cd "$(dirname "$0")"

usage() {
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# take_option NAME DEFAULT ARGS...: $picked = the value of --NAME=... in ARGS (or
# DEFAULT); every other argument is appended to $args.
take_option() {
  local name=$1 arg
  picked=$2
  shift 2
  for arg in "$@"; do
    case "$arg" in
      --"$name"=*) picked=${arg#--"$name"=} ;;
      *) args+=("$arg") ;;
    esac
  done
}

[ $# -ge 1 ] || usage
family=$1
shift
args=()
case "$family" in
  atari)
    take_option game Pong "$@"
    env="atari:$picked"
    # Two actor processes of 16 environments each, and a budget that learns Pong on
    # 2 CPU cores (+10 at 18.1M frames, docs/results.md); override any flag.
    defaults=(--num_actors=2 --envs_per_actor=16 --total_environment_frames=30000000)
    ;;
  minatar)
    take_option game Breakout "$@"
    env="minatar:$picked"
    defaults=(--num_actors=2 --envs_per_actor=16)
    ;;
  football)
    take_option scenario academy_empty_goal_close "$@"  # SEED RL football/env.py default
    env="football:$picked"
    # The agent's settings come from the Football preset (seed_rl/config/presets.py).
    defaults=(--num_actors=2 --envs_per_actor=8)
    ;;
  gym)
    [ $# -ge 1 ] || usage
    env=$1
    shift
    args=("$@")
    defaults=(--num_actors=2 --envs_per_actor=8)
    ;;
  dmlab)
    take_option level explore_goal_locations_small "$@"  # SEED RL dmlab/config.py --game
    env="dmlab:$picked"
    defaults=(--num_actors=2 --envs_per_actor=8)
    ;;
  *) usage ;;
esac

tools/setup_venv.sh >&2
# Agent settings per environment family (and the cheaper CPU choices, e.g. the
# Nature CNN) come from seed_rl/config/presets.py; seed_rl.train prints them at start.
if [ "$family" = football ]; then
  .venv/bin/python -c "import gfootball.env" 2>/dev/null || {
    echo "error: Google Research Football (gfootball) is not installed in .venv; run tools/setup_football.sh" >&2
    exit 1
  }
  if ! .venv/bin/python -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
    # The mini-map ResNet is slow to train on a CPU; the 115-float vector and an MLP are cheap.
    echo "no CUDA GPU: using the simple115v2 vector and an MLP (pass --football_representation=extracted for SEED's mini-map network)" >&2
    defaults+=(--football_representation=simple115v2)
  fi
fi
exec .venv/bin/python -m seed_rl.train --env="$env" "${defaults[@]}" "${args[@]}"
