#!/usr/bin/env bash
# Runs checks inside the images built by docker/build_local.sh:
#   docker/check_local.sh           # the actor image, against a learner started here from
#                                   # .venv (run tools/setup_venv.sh first)
#   docker/check_local.sh learner   # the learner image: a short CartPole run inside it
#   docker/check_local.sh actor-football     # a Football env steps in the image, then the
#                                            # actor checks
#   docker/check_local.sh learner-football   # the same, a 300-frame Football training,
#                                            # then the learner check
# `podman run` cannot start containers in this project's sandbox (crun: setrlimit is
# refused), so the image's root filesystem is mounted and entered with chroot: the
# image's own Python, packages and seed_rl run, sharing this machine's kernel and
# network (actors reach the learner on 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-actor}
case "$which" in
  actor|learner|actor-football|learner-football) image=localhost/seed-rl-$which:latest ;;
  *) echo "error: unknown image '$which'; choose actor, learner, actor-football or learner-football" >&2
     exit 2 ;;
esac
podman=(podman --storage-driver=vfs)
port=$(.venv/bin/python -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
work=$(mktemp -d)
container=$("${podman[@]}" create "$image" true)
root=$("${podman[@]}" mount "$container")
learner=""
cleanup() {
  if [ -n "$learner" ]; then kill "$learner" 2>/dev/null || true; fi
  umount "$root/proc" "$root/dev" 2>/dev/null || true
  "${podman[@]}" umount "$container" >/dev/null || true
  "${podman[@]}" rm "$container" >/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
in_image() { chroot "$root" /usr/bin/env PATH=/opt/venv/bin:/usr/bin:/bin HOME=/root "$@"; }

if [ "$which" != "${which%-football}" ]; then
  echo "== gfootball in the image: the engine loads and an academy scenario steps"
  in_image python3 -c "
import gfootball.env
from seed_rl.envs import make_env
env = make_env('football:academy_empty_goal_close', 0); obs, _ = env.reset(seed=0)
steps, ret = 0, 0.0
while True:
    obs, r, term, trunc, _ = env.step(env.action_space.sample()); steps += 1; ret += r
    if term or trunc: break
print('Football observation', obs.shape, obs.dtype, 'episode of', steps, 'steps, return', ret)"
  if [ "$which" = learner-football ]; then
    echo "== a 300-frame Football training (learner probe env and 1 actor process) inside the image"
    in_image python3 -m seed_rl.train --env=football:academy_empty_goal_close --num_actors=1 \
      --envs_per_actor=2 --unroll_length=16 --batch_size=2 --total_environment_frames=300 \
      --log_interval_s=1 --logdir=/tmp/seed-rl-check-football >"$work/football.log" 2>&1 \
      || { tail -20 "$work/football.log" >&2; exit 1; }
    tail -1 "$root/tmp/seed-rl-check-football/metrics.jsonl"
  fi
  which=${which%-football}
elif in_image python3 -c "import gfootball" 2>/dev/null; then
  echo "error: gfootball is installed in $image; only the -football images should carry it" >&2; exit 1
fi

if [ "$which" = learner ]; then
  echo "== a short CartPole training (learner and 2 actor processes) inside the learner image"
  in_image python3 -c "import torch, tensorboard; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
  in_image python3 -m seed_rl.train --env=CartPole-v1 --num_actors=2 --envs_per_actor=4 \
    --total_environment_frames=4000 --log_interval_s=1 --logdir=/tmp/seed-rl-check >"$work/train.log" 2>&1 \
    || { tail -20 "$work/train.log" >&2; exit 1; }
  tail -1 "$root/tmp/seed-rl-check/metrics.jsonl"
  echo "all checks passed"
  exit 0
fi
echo "== the image's Python and packages"
in_image python3 -c "import sys, seed_rl, grpc, gymnasium, ale_py, cv2; print(sys.version.split()[0], seed_rl.__file__)"
echo "== no torch in the actor image"
if in_image python3 -c "import torch" 2>/dev/null; then echo "error: torch is installed in $image" >&2; exit 1; fi
echo "== an Atari Pong environment steps"
in_image python3 -c "
from seed_rl.envs import EnvConfig, make_env
env = make_env('atari:Pong', 0, EnvConfig()); obs, _ = env.reset(seed=0)
for _ in range(100): obs, r, term, trunc, _ = env.step(env.action_space.sample())
print('Pong observation', obs.shape, obs.dtype)"
echo "== a CartPole actor replica in the image (vertex_task, CLUSTER_SPEC) trains a learner on this machine"
.venv/bin/python -m seed_rl.train --role=learner --learner_address="127.0.0.1:$port" --env=CartPole-v1 \
  --num_actors=1 --envs_per_actor=4 --total_environment_frames=4000 --log_interval_s=1 \
  --logdir="$work/train" >"$work/learner.log" 2>&1 &
learner=$!
spec="{\"cluster\": {\"workerpool0\": [\"127.0.0.1:$port\"], \"workerpool1\": [\"127.0.0.1:1\"]},
  \"environment\": \"cloud\", \"task\": {\"type\": \"workerpool1\", \"index\": 0}}"
in_image env CLUSTER_SPEC="$spec" python3 -m seed_rl.launch.vertex_task --insecure \
  -- --env=CartPole-v1 --envs_per_actor=4 >"$work/actor.log" 2>&1 &
actor=$!
status=0
wait "$learner" || status=$?
learner=""
kill -TERM "$actor" 2>/dev/null || true
wait "$actor" || true
if [ "$status" != 0 ]; then
  echo "error: the learner failed" >&2; tail -20 "$work/learner.log" "$work/actor.log" >&2; exit 1
fi
tail -1 "$work/train/metrics.jsonl"
echo "all checks passed"
