#!/usr/bin/env bash
# Creates or updates .venv with seed_rl and the given extras (comma-separated;
# default atari,minatar,plot,video: what ./run_local.sh and the README's
# `seed_rl.evaluate --video` need; ./run_tests.sh asks for the test extras).
# Re-installs when pyproject.toml or the C++ sources change, or when an extra
# is asked for that is not installed yet; extras installed earlier are kept, so
# switching between training and tests never rebuilds the C++ extension.
# Installs torch==2.13.0 first when no torch is present: on the project's
# reference machines that is a local CPU build, and a bare torch requirement
# would pull a multi-GB CUDA build. Set SEED_RL_PYTHON to choose the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-atari,minatar,plot,video}
python=${SEED_RL_PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $($python --version)"
  "$python" -m venv .venv
fi
stamp=.venv/.seed_rl-installed  # "<sources hash> <installed extras>"
sources="$(cat pyproject.toml CMakeLists.txt ops/* | sha1sum | cut -c1-12)"
installed=""
[ -f "$stamp" ] && read -r installed_sources installed < "$stamp" || true
# The union of what is installed and what is asked for, sorted, comma-separated.
extras=$(echo "$installed,$extras" | tr ',' '\n' | sed '/^$/d' | sort -u | paste -sd, -)
if [ -f "$stamp" ] && [ "$installed_sources" = "$sources" ] && [ "$installed" = "$extras" ]; then
  exit 0
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install --quiet "torch==2.13.0"
fi
.venv/bin/python -m pip install --quiet -e ".[$extras]"
echo "$sources $extras" > "$stamp"
