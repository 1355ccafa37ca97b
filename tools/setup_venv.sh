#!/usr/bin/env bash
# Creates or updates .venv with seed_rl and the given extras (comma-separated;
# default atari,test,plot,shimmy,gcp,ray). Re-installs when pyproject.toml or the C++ sources change.
# Installs torch==2.13.0 first when no torch is present: on the project's
# reference machines that is a local CPU build, and a bare torch requirement
# would pull a multi-GB CUDA build. Set SEED_RL_PYTHON to choose the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
# One set of extras for training and tests, so switching between the two
# commands never rebuilds the C++ extension. ray: the Ray launcher and its test.
extras=${1:-atari,test,plot,shimmy,gcp,ray}
python=${SEED_RL_PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $($python --version)"
  "$python" -m venv .venv
fi
stamp=.venv/.seed_rl-installed
want="$(cat pyproject.toml CMakeLists.txt ops/* | sha1sum | cut -c1-12) $extras"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install --quiet "torch==2.13.0"
fi
.venv/bin/python -m pip install --quiet -e ".[$extras]"
echo "$want" > "$stamp"
