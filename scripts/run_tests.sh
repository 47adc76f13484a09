#!/usr/bin/env bash
# Set up the environment, then run the test suite on CPU.
# Usage: bash scripts/run_tests.sh [PYTEST_ARGS...]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${MONAI_UNLEARN_VENV:-$repo/.venv}
bash "$repo/scripts/setup_env.sh" "$venv"
cd "$repo"
exec "$venv/bin/python" -m pytest tests "$@"
