"""The scanner classifier bundle through the real MONAI bundle CLI: train, retrain oracle, forget SIEMENS.

The bundle is copied to a temporary folder and its datalist points at the real NIH DICOM files (small setting). A model
is trained with train.json and the retrain oracle with ``python -m monai_unlearn.oracle``. The revision then runs
with ``forget_siemens.json`` merged onto train.json and unlearn.json.
Budget: about 70 s, most of it in the four subprocesses.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPOSITORY, data_dir

SCANNER_BUNDLE = REPOSITORY / "bundles" / "scanner_classifier"
TRAIN_OVERRIDES = ["--num_epochs", "4", "--val_interval", "2"]
FORGET_RULE = "Manufacturer == 'SIEMENS'"
# The patient name of the NIH files; it must never appear in a log, report or manifest.
PATIENT_NAME_PART = "Test^Regression"


def run(bundle: Path, command: list[str]) -> subprocess.CompletedProcess:
    environment = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", MONAI_UNLEARN_DATA=str(data_dir()))
    result = subprocess.run(command, cwd=bundle, env=environment, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def bundle_cli(bundle: Path, config_files: list[str], *overrides: str) -> subprocess.CompletedProcess:
    return run(
        bundle,
        [
            sys.executable, "-m", "monai.bundle", "run",
            "--config_file", str(config_files),
            "--meta_file", "configs/metadata.json",
            "--logging_file", "configs/logging.conf",
            *overrides,
        ],
    )


@pytest.fixture(scope="module")
def revised_bundle(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Train the bundle, its oracle, and revise it with forget_siemens.json; return the folder, logs and report."""
    bundle = tmp_path_factory.mktemp("scanner") / "scanner_classifier"
    shutil.copytree(SCANNER_BUNDLE, bundle, ignore=shutil.ignore_patterns("data", "models", "eval", "__pycache__"))
    logs = [run(bundle, [sys.executable, "scripts/prepare_data.py", "--small", "--data-dir", str(data_dir())])]
    logs.append(bundle_cli(bundle, ["configs/train.json"], *TRAIN_OVERRIDES))
    oracle = run(
        bundle,
        [sys.executable, "-m", "monai_unlearn.oracle", "--bundle-root", ".", "--forget-rule", FORGET_RULE,
         "--override", "num_epochs=4", "--override", "val_interval=2"],
    )
    logs.append(oracle)
    oracle_checkpoint = oracle.stdout.strip().splitlines()[-1]
    logs.append(
        bundle_cli(
            bundle,
            ["configs/train.json", "configs/unlearn.json", "configs/forget_siemens.json"],
            "--unlearn#oracle_checkpoint", oracle_checkpoint, "--unlearn#relearn#max_steps", "20",
        )
    )
    report = json.loads((bundle / "eval" / "unlearning" / "unlearning_report.json").read_text())
    return {"bundle": bundle, "logs": logs, "report": report}


def test_report_compares_siemens_metrics_with_oracle(revised_bundle: dict):
    report = revised_bundle["report"]
    assert report["forget_rule"] == FORGET_RULE
    metrics = report["metrics"]
    for key in ("forget_train_accuracy", "forget_heldout_accuracy", "retain_accuracy", "test_accuracy", "mia_efficacy"):
        assert key in metrics, f"the report lacks {key}"
        assert set(metrics[key]) >= {"original", "revised", "oracle"}, f"{key} should have the oracle's value too"
    test_split = report["splits"]["test"]
    assert test_split["after"]["forget_samples"] == 16, "the test split holds 16 SIEMENS slices"
    assert "forget_mean_loss" in test_split["oracle"], "the SIEMENS loss should be compared with the oracle's"
    assert "mean" in report["gap"]["revised"], "the report should give the mean gap to the oracle"


def test_forget_set_is_siemens_only(revised_bundle: dict):
    manifest = json.loads((revised_bundle["bundle"] / "eval" / "unlearning" / "audit_manifest.json").read_text())
    forget_set = manifest["forget_set"]
    assert forget_set["forget_samples"] == 16, f"4 SIEMENS mosaics x 4 slices are trained on, got {forget_set}"
    hashes = forget_set["forget_case_hashes"]
    assert all(len(value) == 64 for value in hashes), "case IDs should be stored as 64-digit salted hashes"
    assert not any("siemens" in value for value in hashes), "no case ID in clear in the manifest"


def test_original_checkpoint_kept(revised_bundle: dict):
    models = revised_bundle["bundle"] / "models"
    assert list(models.glob("model.original-*.pt")), "RevisionSaver should keep the trained checkpoint"


def test_no_patient_name_in_outputs(revised_bundle: dict):
    bundle = revised_bundle["bundle"]
    for result in revised_bundle["logs"]:
        assert PATIENT_NAME_PART not in result.stdout + result.stderr, f"a log of {result.args[:4]} names the patient"
    for path in (bundle / "eval").rglob("*"):
        if path.is_file() and path.suffix in (".json", ".md", ".csv", ".txt", ".log"):
            assert PATIENT_NAME_PART not in path.read_text(errors="replace"), f"{path} names the patient"
    for path in (bundle / "models").rglob("*.log"):
        assert PATIENT_NAME_PART not in path.read_text(errors="replace"), f"{path} names the patient"
