#!/usr/bin/env bash
# Sample Factory's APPO against this project's IMPALA on Atari Pong: training
# frames/s of each, one after the other on the same cores, and their ratio.
#
#   tools/bench_sample_factory.sh [SECONDS] [--warmup_seconds=30] [--sf_args='--flag=value ...'] [train flags...]
#
# SECONDS (default 120) is each side's measurement, after the warm-up.
# 1. Sample Factory 2.1.1's Atari example (sf_examples.atari.train_atari) on
#    Pong, CPU only, 2 rollout workers x 16 envs and seed_rl's batch shape, in a
#    throwaway virtualenv ($SF_VENV, default ${TMPDIR:-/tmp}/seed_rl_sf_venv,
#    made on first use and reused; never a project dependency).
# 2. ./run_local.sh atari's training (python -m seed_rl.train --env=atari:Pong
#    --num_actors=2 --envs_per_actor=16) plus the train flags given, e.g.
#    --double_buffer, so one script compares seed_rl's variants against the same
#    reference. --num_actors/--envs_per_actor change both sides.
# Both count environment frames (agent steps x the frame skip of 4). Details,
# and the list of what differs between the two, in tools/bench_sample_factory.py.
set -euo pipefail
cd "$(dirname "$0")/.."

sf_venv=${SF_VENV:-${TMPDIR:-/tmp}/seed_rl_sf_venv}
sf_version=2.1.1
# torch first and pinned: its local CPU build. Left to sample-factory's own
# requirement (torch<3), pip would pull a CUDA build of several GB.
torch_version=2.13.0
# Sample Factory 2.1.1 needs gymnasium<1.0: ale-py 0.9/0.10 ship the ROMs and
# still run on it (0.11 and newer need gymnasium 1.x; 0.8 downloads its ROMs).
ale_spec='ale-py>=0.9,<0.11'

seconds=120
if [ $# -ge 1 ] && [[ $1 != --* ]]; then
  seconds=$1
  shift
fi

stamp=$sf_venv/.seed_rl-sf-installed
wanted="sample-factory==$sf_version torch==$torch_version $ale_spec"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  echo "setting up Sample Factory's throwaway virtualenv in $sf_venv" >&2
  [ -x "$sf_venv/bin/python" ] || python3 -m venv "$sf_venv"
  "$sf_venv/bin/python" -m pip install --quiet "torch==$torch_version"
  "$sf_venv/bin/python" -m pip install --quiet "sample-factory==$sf_version" "$ale_spec" "torch==$torch_version"
  echo "$wanted" > "$stamp"
fi
# Refuse a venv whose torch something replaced (a CUDA build would still run, but not the same torch).
"$sf_venv/bin/python" - "$torch_version" <<'PY'
import sys
from importlib.metadata import version
import torch
if torch.__version__.split("+")[0] != sys.argv[1] or torch.version.cuda is not None:
    sys.exit(f"Sample Factory's venv has torch {torch.__version__} (CUDA {torch.version.cuda}), "
             f"not the CPU build of {sys.argv[1]}: remove the venv and run again")
print("Sample Factory's venv:", ", ".join(f"{p} {version(p)}" for p in ("sample-factory", "torch", "gymnasium", "ale-py")))
PY

tools/setup_venv.sh >&2
exec .venv/bin/python tools/bench_sample_factory.py --sf_python="$sf_venv/bin/python" --seconds="$seconds" "$@"
