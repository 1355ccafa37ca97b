#!/usr/bin/env bash
# Bootstraps .venv (as run_local.sh does) and runs the test suite on the CPU.
#   ./run_tests.sh              # everything, learning runs included
#   ./run_tests.sh -m "not slow" # skip the multi-minute learning runs
set -euo pipefail
cd "$(dirname "$0")"
tools/setup_venv.sh >&2
exec .venv/bin/python -m pytest "$@"
