#!/usr/bin/env bash
# The main job: set up the environment, train the example modality classifier bundle on real images, then revise
# it in place through the MONAI bundle CLI so that it forgets the breast ultrasound class, and print the report.
# Usage: bash scripts/main_job.sh [--data-dir DIR] [--oracle]
# The data directory defaults to $MONAI_UNLEARN_DATA, then ../shared/data (see the README's "Data" section).
# --oracle also trains the retrain oracle (the bundle's train.json on the retain set, cached under models/) and puts
# its values beside the original's and the revised model's in the report; it adds about one more training run.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
data_args=()
with_oracle=0
while [ $# -gt 0 ]; do
    case "$1" in
        --data-dir) data_args=(--data-dir "$(cd "$2" && pwd)"); shift 2 ;;
        --oracle) with_oracle=1; shift ;;
        *) echo "Unknown option $1. Usage: bash scripts/main_job.sh [--data-dir DIR] [--oracle]" >&2; exit 2 ;;
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
oracle_args=()
if [ "$with_oracle" = 1 ]; then
    echo "== Training (or reusing) the retrain oracle with the oracle.json overlay"
    oracle=$(python -m monai_unlearn.oracle --bundle-root . | tail -n 1)
    oracle_args=(--unlearn#oracle_checkpoint "$oracle")
fi
echo "== 3/3 Revising the bundle in place with the unlearn.json overlay"
python -m monai.bundle run --config_file "['configs/train.json','configs/unlearn.json']" \
    --meta_file configs/metadata.json --logging_file configs/logging.conf "${oracle_args[@]}"
echo
cat eval/unlearning/unlearning_report.md
echo "Report: $PWD/eval/unlearning/unlearning_report.json"
