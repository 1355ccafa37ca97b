#!/usr/bin/env bash
# Installs Google Research Football (gfootball 2.10.2) into .venv; optional, only
# `./run_local.sh football` and tests/test_football.py need it.
#
#   tools/setup_football.sh
#   SEED_RL_VENV=/opt/venv tools/setup_football.sh     # another venv (docker/Dockerfile)
#
# SEED_RL_VENV: the venv to install into (default .venv; created with
#   tools/setup_venv.sh only when it is the default and missing).
# SEED_RL_FOOTBALL_WHEELS: a folder; when set, the gfootball wheel built here is also
#   left there, with requirements.txt listing its runtime dependencies, so another
#   environment can install it without the build dependencies (docker/Dockerfile's
#   actor-football stage does).
#
# 1. The Debian build dependencies (SDL2 with image/ttf/gfx, Boost with
#    Boost.Python, Mesa GL/EGL, CMake, a C++ compiler): installed with apt-get
#    when missing and running as root, otherwise the apt command is printed.
# 2. gfootball is built from its sdist (about 3 minutes on 2 cores). Its build
#    script runs the first `python3` on PATH, which must import psutil, so the
#    venv's bin goes first on PATH and pip runs with --no-build-isolation.
#    --no-deps: its own requirements would add opencv-python, which clashes with
#    the opencv-python-headless of the atari extra; the runtime dependencies are
#    installed explicitly instead, with `six` (imported but not declared) and
#    gym==0.25.2 (gfootball needs the old reset/step API; seed_rl.envs.football
#    is the only module that sees it).
# Creates .venv first (tools/setup_venv.sh) when there is none. Re-running is a
# no-op once gfootball imports.
set -euo pipefail
cd "$(dirname "$0")/.."

GFOOTBALL_VERSION=2.10.2
deb_packages=(
  build-essential cmake pkg-config
  libgl1-mesa-dev libegl-dev
  libsdl2-dev libsdl2-image-dev libsdl2-ttf-dev libsdl2-gfx-dev
  libboost-python-dev libboost-thread-dev libboost-system-dev libboost-filesystem-dev
)

venv=${SEED_RL_VENV:-.venv}
venv=$(cd "$(dirname "$venv")" && pwd)/$(basename "$venv")
if [ ! -x "$venv/bin/python" ]; then
  if [ -z "${SEED_RL_VENV:-}" ]; then
    tools/setup_venv.sh
  else
    echo "error: SEED_RL_VENV=$SEED_RL_VENV has no bin/python; create the venv first (python3 -m venv ...)" >&2
    exit 2
  fi
fi
python=$venv/bin/python
wheels=${SEED_RL_FOOTBALL_WHEELS:-}
# gfootball's runtime dependencies (see the note at the top).
runtime_packages=(psutil six "gym==0.25.2" scipy absl-py opencv-python-headless)

if [ -z "$wheels" ] && "$python" -c "import gfootball.env" 2>/dev/null; then
  echo "gfootball is already installed in $venv"
  exit 0
fi

# Boost.Python and the engine compile against the venv interpreter's headers.
if [ ! -f "$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ]; then
  deb_packages+=(python3-dev)
fi
missing=()
for package in "${deb_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing the Debian build dependencies of gfootball: ${missing[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
  else
    echo "error: gfootball needs these Debian packages to build; install them and re-run:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

"$python" -m pip install --quiet "${runtime_packages[@]}" wheel setuptools
echo "building gfootball $GFOOTBALL_VERSION from source (a few minutes)"
if [ -z "$wheels" ]; then
  PATH="$venv/bin:$PATH" "$python" -m pip install --quiet --no-build-isolation --no-deps \
    --no-binary gfootball "gfootball==$GFOOTBALL_VERSION"
else
  mkdir -p "$wheels"
  PATH="$venv/bin:$PATH" "$python" -m pip wheel --quiet --no-build-isolation --no-deps \
    --no-binary gfootball --wheel-dir "$wheels" "gfootball==$GFOOTBALL_VERSION"
  printf '%s\n' "${runtime_packages[@]}" >"$wheels/requirements.txt"
  "$python" -m pip install --quiet --no-deps "$wheels"/gfootball-"$GFOOTBALL_VERSION"-*.whl
fi
"$python" -c "import gfootball.env; print('gfootball', '$GFOOTBALL_VERSION', 'installed in $venv')"
