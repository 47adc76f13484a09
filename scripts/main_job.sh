#!/usr/bin/env bash
# The main job: set up the environment, train the example modality classifier bundle on real images, then revise
# it in place through the MONAI bundle CLI so that it forgets the breast ultrasound class, and print the report.
# Usage: bash scripts/main_job.sh [--data-dir DIR]
# The data directory defaults to $MONAI_UNLEARN_DATA, then ../shared/data (see the README's "Data" section).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
data_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --data-dir) data_args=(--data-dir "$(cd "$2" && pwd)"); shift 2 ;;
        *) echo "Unknown option $1. Usage: bash scripts/main_job.sh [--data-dir DIR]" >&2; exit 2 ;;
    esac
done
venv=${MONAI_UNLEARN_VENV:-$repo/.venv}
bash "$repo/scripts/setup_env.sh" "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"

cd "$repo/bundles/modality_classifier"
echo "== 1/3 Building the modality datalist from real images"
python scripts/prepare_data.py "${data_args[@]}"
echo "== 2/3 Training the bundle with its own train.json"
python -m monai.bundle run --config_file configs/train.json \
    --meta_file configs/metadata.json --logging_file configs/logging.conf
echo "== 3/3 Revising the bundle in place with the unlearn.json overlay"
python -m monai.bundle run --config_file "['configs/train.json','configs/unlearn.json']" \
    --meta_file configs/metadata.json --logging_file configs/logging.conf
echo
cat eval/unlearning/unlearning_report.md
echo "Report: $PWD/eval/unlearning/unlearning_report.json"
