#!/usr/bin/env bash
# Bootstraps .venv (as run_local.sh does) and runs the test suite on the CPU.
#   ./run_tests.sh              # everything, learning runs included
#   ./run_tests.sh -m "not slow" # skip the multi-minute learning runs
set -euo pipefail
cd "$(dirname "$0")"
# Test extras: Atari, the test tools, plots, video, old-gym (shimmy), Vertex AI, Ray and the DMLab
# level cache's gs:// support (the engine itself is not on PyPI).
# Google Research Football is built separately (tools/setup_football.sh; CI does).
tools/setup_venv.sh atari,minatar,test,plot,video,shimmy,gcp,ray,dmlab >&2
# Two workers: most tests wait on processes and sockets more than they compute (4 test files took 464 s
# one at a time and 234 s on two workers, 2 cores); the whole suite took 1,630 s here, against 2,885 s on one in CI.
# A later -n overrides this one (-n 0: one process).
exec .venv/bin/python -m pytest -n 2 "$@"
