#!/usr/bin/env bash
# Train on this machine: the learner and its actors as local processes.
#
#   ./run_local.sh atari [--game=Breakout] [train flags...]   # Atari, Pong by default
#   ./run_local.sh gym CartPole-v1 [train flags...]           # any gymnasium id
#   ./run_local.sh dmlab [--level=rooms_watermaze] [train flags...]  # DeepMind Lab (engine built separately)
#
# Creates or updates the virtualenv .venv (see tools/setup_venv.sh), then runs
# python -m seed_rl.train. Ctrl-C stops every process and writes a checkpoint;
# running the same command again resumes from it.
set -euo pipefail
cd "$(dirname "$0")"

usage() {
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2
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
    # 30-minute-scale defaults for a small CPU machine; override any of them.
    defaults=(--num_actors=2 --envs_per_actor=16)
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
image_family=$([ "$family" = gym ] && echo false || echo true)
if [ "$family" = dmlab ] && ! .venv/bin/python -c "import deepmind_lab" 2>/dev/null; then
  # seed_rl.train stops before starting anything, with one line that says how
  # to build deepmind_lab; no other notice before it.
  image_family=false
fi
if [ "$image_family" = true ] && ! .venv/bin/python -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
  # The IMPALA deep ResNet trains at ~450 frames/s on 2 CPU cores, the Nature
  # CNN at ~3,500 (measured, README); later flags override this one.
  echo "no CUDA GPU: using the cheaper Nature CNN (pass --torso=impala_deep for the IMPALA ResNet)" >&2
  defaults+=(--torso=nature)
fi
exec .venv/bin/python -m seed_rl.train --env="$env" "${defaults[@]}" "${args[@]}"
