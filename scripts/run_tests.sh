#!/usr/bin/env bash
# Set up the environment, then run the test suite on CPU.
# Usage: bash scripts/run_tests.sh [PYTEST_ARGS...]
# The suite runs in MONAI_UNLEARN_TEST_WORKERS pytest-xdist processes (default 2, one per core of a small CI machine;
# 0 runs it in this process), each test file in one process, with one torch thread per process.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${MONAI_UNLEARN_VENV:-$repo/.venv}
bash "$repo/scripts/setup_env.sh" "$venv"
cd "$repo"
workers=${MONAI_UNLEARN_TEST_WORKERS:-2}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
if [ "$workers" = 0 ]; then
    exec "$venv/bin/python" -m pytest tests "$@"
fi
exec "$venv/bin/python" -m pytest -n "$workers" --dist loadfile tests "$@"
