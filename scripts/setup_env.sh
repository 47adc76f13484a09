#!/usr/bin/env bash
# Create (or reuse) a virtual environment and install monai_unlearn with its test extra into it.
# Usage: bash scripts/setup_env.sh [VENV_DIR]   (default: .venv in the repository root)
# torch 2.13.0 is installed first, so that pip takes the CPU wheel instead of a multi-gigabyte CUDA build.
# Set MONAI_UNLEARN_TORCH to another requirement (for example "torch" for your platform's default build) to change it.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:-$repo/.venv}
python=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ]; then
    echo "Creating the virtual environment $venv"
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "${MONAI_UNLEARN_TORCH:-torch==2.13.0}"
"$venv/bin/python" -m pip install --quiet -e "$repo[test]"
"$venv/bin/python" -c "import monai_unlearn, monai, torch; print(f'monai_unlearn {monai_unlearn.__version__}, monai {monai.__version__}, torch {torch.__version__}')"
