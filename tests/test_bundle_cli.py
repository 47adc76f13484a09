"""End-to-end tests: the modality classifier bundle trained and revised through the real MONAI bundle CLI.

The bundle is copied to a temporary folder, trained for a few epochs on the small real dataset, then revised with
its unlearn.json overlay, exactly as the README's main job does at full size.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import MODALITY_BUNDLE, data_dir
from monai_unlearn.utils import sha256_file

TRAIN_OVERRIDES = ["--num_epochs", "8", "--val_interval", "4"]
# The small dataset has few samples, so the revision takes smaller batches and more passes than at full size.
REVISION_OVERRIDES = ["--unlearn#passes", "4", "--unlearn#learning_rate", "0.001", "--batch_size", "16"]


def bundle_cli(bundle: Path, config_files: list[str], *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python -m monai.bundle run`` in ``bundle`` with the given config files and overrides."""
    command = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        str(config_files),
        "--meta_file",
        "configs/metadata.json",
        "--logging_file",
        "configs/logging.conf",
        *overrides,
    ]
    environment = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    result = subprocess.run(command, cwd=bundle, env=environment, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"bundle CLI failed ({' '.join(command)}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


@pytest.fixture(scope="module")
def trained_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the bundle with the small dataset prepared and a model trained by its own train.json."""
    bundle = tmp_path_factory.mktemp("bundle") / "modality_classifier"
    shutil.copytree(MODALITY_BUNDLE, bundle, ignore=shutil.ignore_patterns("data", "models", "eval", "__pycache__"))
    subprocess.run(
        [sys.executable, "scripts/prepare_data.py", "--small", "--data-dir", str(data_dir())],
        cwd=bundle,
        check=True,
        capture_output=True,
        text=True,
    )
    bundle_cli(bundle, ["configs/train.json"], *TRAIN_OVERRIDES)
    assert (bundle / "models" / "model.pt").is_file(), "train.json should have written models/model.pt"
    assert (bundle / "models" / "training_time.json").is_file(), "train.json should have recorded the training time"
    shutil.copy2(bundle / "models" / "model.pt", bundle / "models" / "trained.pt")
    return bundle


@pytest.fixture()
def bundle(trained_bundle: Path) -> Path:
    """The trained bundle with its trained checkpoint restored and earlier revision outputs removed."""
    models = trained_bundle / "models"
    for path in models.glob("model.original-*.pt"):
        path.unlink()
    shutil.copy2(models / "trained.pt", models / "model.pt")
    shutil.rmtree(trained_bundle / "eval", ignore_errors=True)
    return trained_bundle


def read_report(bundle: Path) -> dict:
    path = bundle / "eval" / "unlearning" / "unlearning_report.json"
    assert path.is_file(), f"the revision should have written {path}"
    return json.loads(path.read_text())


def test_revision_forgets_class_through_cli(bundle: Path):
    original_sha = sha256_file(bundle / "models" / "model.pt")

    bundle_cli(bundle, ["configs/train.json", "configs/unlearn.json"], *REVISION_OVERRIDES)

    report = read_report(bundle)
    test = report["splits"]["test"]
    assert test["before"]["forget_accuracy"] >= 0.8, f"the trained bundle should know the class: {test['before']}"
    assert test["after"]["forget_accuracy"] <= 0.2, f"forget-class test accuracy stayed high: {test['after']}"
    assert test["after"]["retain_accuracy"] >= test["before"]["retain_accuracy"] - 0.1, (
        f"retain-class test accuracy fell too far: before {test['before']['retain_accuracy']}, "
        f"after {test['after']['retain_accuracy']}"
    )
    assert report["forget_rule"] == "label in [1]", f"the report should record the rule, got {report['forget_rule']!r}"
    assert report["method"]["preset"] == "psg_retain", f"the overlay's preset should be recorded: {report['method']}"
    assert 0.0 <= report["flip_rate"] <= 1.0, f"flip rate out of range: {report['flip_rate']}"
    assert report["timing"]["revision_seconds"] > 0, "the revision wall time should be measured"
    assert report["timing"]["original_training_seconds"] > 0, "the original training time should be read"
    assert report["timing"]["speedup"] > 0, "the report should compare revision and training time"
    assert len(report["passes"]) == 4, f"expected 4 pass summaries, got {len(report['passes'])}"


def test_revision_keeps_original_and_replaces_model(bundle: Path):
    models = bundle / "models"
    original_sha = sha256_file(models / "model.pt")

    bundle_cli(bundle, ["configs/train.json", "configs/unlearn.json"], *REVISION_OVERRIDES)

    backup = models / f"model.original-{original_sha[:12]}.pt"
    assert backup.is_file(), f"the original checkpoint should be kept as {backup.name}"
    assert sha256_file(backup) == original_sha, "the kept original differs from the trained checkpoint"
    revised_sha = sha256_file(models / "model.pt")
    assert revised_sha != original_sha, "models/model.pt should hold the revised weights"
    report = read_report(bundle)
    assert report["checkpoints"]["original_sha256"] == original_sha, "the report should record the original digest"
    assert report["checkpoints"]["revised_sha256"] == revised_sha, "the report should record the revised digest"
    original = torch.load(backup, weights_only=True)
    revised = torch.load(models / "model.pt", weights_only=True)
    assert revised.keys() == original.keys(), "the revised checkpoint should keep the original's layout and keys"


def test_markdown_report_is_written(bundle: Path):
    bundle_cli(bundle, ["configs/train.json", "configs/unlearn.json"], *REVISION_OVERRIDES)
    markdown = (bundle / "eval" / "unlearning" / "unlearning_report.md").read_text()
    for expected in ("# Unlearning report", "accuracy on forget samples", "Revision wall time", "## test", "## Passes"):
        assert expected in markdown, f"the Markdown report lacks {expected!r}"


def test_paired_overlay_revises_through_cli(bundle: Path):
    bundle_cli(
        bundle, ["configs/train.json", "configs/unlearn.json", "configs/unlearn_paired.json"], *REVISION_OVERRIDES
    )
    report = read_report(bundle)
    after = report["splits"]["test"]["after"]
    assert after["forget_accuracy"] <= 0.3, f"the paired-loader revision should forget the class: {after}"
    assert report["passes"][0]["retain_samples"] > 0, "psg_retain should draw retain batches from the retain loader"


def test_rule_matching_nothing_fails_and_keeps_checkpoint(bundle: Path):
    checkpoint = bundle / "models" / "model.pt"
    original_sha = sha256_file(checkpoint)

    result = bundle_cli(
        bundle, ["configs/train.json", "configs/unlearn.json"], "--forget_rule", "label in {7}", check=False
    )

    assert result.returncode != 0, "a forget rule matching nothing must fail the run"
    assert "matches none of the" in result.stdout + result.stderr, "the error should say that the rule matched nothing"
    assert sha256_file(checkpoint) == original_sha, "the checkpoint must be untouched after a failed run"


def test_mismatched_checkpoint_fails_and_keeps_checkpoint(bundle: Path):
    checkpoint = bundle / "models" / "model.pt"
    original_sha = sha256_file(checkpoint)

    result = bundle_cli(
        bundle,
        ["configs/train.json", "configs/unlearn.json"],
        "--network_def#init_features",
        "4",
        check=False,
    )

    assert result.returncode != 0, "a checkpoint that does not fit the network must fail the run"
    assert "size mismatch" in result.stdout + result.stderr, "the error should name the size mismatch"
    assert sha256_file(checkpoint) == original_sha, "the checkpoint must be untouched after a failed run"
