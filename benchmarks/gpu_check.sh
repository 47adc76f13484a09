#!/usr/bin/env bash
# GPU check for machines with a CUDA device. It is not part of CI or of the test suite.
#
# Runs, in about 3 to 5 minutes on one GPU:
#   1. the small modality dataset and 2 training epochs of the example bundle on cuda:0 (train.json);
#   2. one revision through the bundle CLI on cuda:0 (train.json + unlearn.json, --device override);
#   3. the same revision with AMP and channels-last on (--train#trainer#amp true, --train#trainer#channels_last true);
#   4. the same revision with torch.compile on (--train#trainer#compile true);
#   5. the small settings of benchmarks/engine_overhead.py and benchmarks/memory.py on cuda:0.
# Each step checks that it ran on CUDA and prints its result; the script stops at the first failure.
#
# Usage (from anywhere): bash benchmarks/gpu_check.sh [WORK_DIR]
# WORK_DIR defaults to a new temporary folder. The data directory is found as for the tests ($MONAI_UNLEARN_DATA,
# then ../shared/data). Set PYTHON to choose the interpreter (default: python).
# Exit codes: 0 when every step passed, 2 when no CUDA device is available, other values when a step failed.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python}

if ! "$python" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check.sh: no CUDA device available (torch.cuda.is_available() is False), so nothing was run." \
        "Run this script on a machine with an NVIDIA GPU and a CUDA build of torch." >&2
    exit 2
fi

work=${1:-$(mktemp -d -t monai_unlearn_gpu_check.XXXXXX)}
mkdir -p "$work"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
device_override=(--device "\$torch.device('cuda:0')")
started=$(date +%s)

step() { echo; echo "== $(($(date +%s) - started)) s: $*"; }

check_report_device() {
    "$python" - "$1" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
device = report.get("device", "")
if not device.startswith("cuda"):
    sys.exit(f"the revision ran on {device!r}, expected a CUDA device")
test = report["splits"]["test"]
print(f"revision on {device}: {report['timing']['revision_seconds']:.1f} s; test forget accuracy "
      f"{test['before'].get('forget_accuracy')} -> {test['after'].get('forget_accuracy')}, retain accuracy "
      f"{test['before'].get('retain_accuracy')} -> {test['after'].get('retain_accuracy')}")
EOF
}

revise() {
    local name=$1
    shift
    step "revision: $name"
    cp models/trained.pt models/model.pt
    rm -f models/model.original-*.pt
    rm -rf eval/unlearning
    timeout 240 "$python" -m monai.bundle run --config_file "['configs/train.json','configs/unlearn.json']" \
        --meta_file configs/metadata.json --logging_file configs/logging.conf "${device_override[@]}" "$@" \
        > "$work/revision_$name.log" 2>&1 \
        || { tail -40 "$work/revision_$name.log"; echo "gpu_check.sh: the revision '$name' failed" >&2; exit 1; }
    check_report_device eval/unlearning/unlearning_report.json
}

step "preparing the small modality dataset and the bundle in $work/bundle"
rm -rf "$work/bundle"
mkdir -p "$work/bundle"
cp -r "$repo/bundles/modality_classifier/configs" "$repo/bundles/modality_classifier/scripts" "$work/bundle/"
cd "$work/bundle"
"$python" scripts/prepare_data.py --small > "$work/prepare.log" 2>&1 || { tail -20 "$work/prepare.log"; exit 1; }

step "training 2 epochs on cuda:0 with train.json"
timeout 240 "$python" -m monai.bundle run --config_file configs/train.json --meta_file configs/metadata.json \
    --logging_file configs/logging.conf "${device_override[@]}" --num_epochs 2 --val_interval 1 \
    > "$work/train.log" 2>&1 || { tail -40 "$work/train.log"; echo "gpu_check.sh: training failed" >&2; exit 1; }
grep -q '"device": "cuda' models/training_time.json || { echo "gpu_check.sh: training did not run on CUDA" >&2; exit 1; }
cp models/model.pt models/trained.pt

revise plain
revise amp_channels_last --train#trainer#amp true --train#trainer#channels_last true
revise compile --train#trainer#compile true

cd "$repo"
step "benchmarks/engine_overhead.py --small on cuda:0"
timeout 240 "$python" benchmarks/engine_overhead.py --small --device cuda:0 --work-dir "$work/benchmarks"
step "benchmarks/memory.py --small on cuda:0"
timeout 240 "$python" benchmarks/memory.py --small --device cuda:0 --work-dir "$work/benchmarks"

step "all GPU checks passed (outputs in $work)"
