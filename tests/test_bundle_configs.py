"""End-to-end tests of the modality classifier's evaluate.json and inference.json through the real MONAI bundle CLI.

A copy of the bundle in a temporary folder is trained for 2 epochs on the small real dataset (prepared with
``scripts/prepare_data.py --small --output-dir``), once per module. The tests then run evaluate.json and
inference.json on it and check the files they write.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from conftest import MODALITY_BUNDLE, data_dir
from monai_unlearn.utils import sha256_file

pytestmark = pytest.mark.slow

CLASS_NAMES = ("chest_xray", "breast_ultrasound", "brain_mri")
# Two epochs with batches of 16 are enough to get a checkpoint. These tests check the outputs, not the accuracy.
TRAIN_OVERRIDES = ("--num_epochs", "2", "--val_interval", "1", "--batch_size", "16")
EVALUATE_CONFIGS = ["configs/train.json", "configs/evaluate.json"]


@dataclass
class TrainedBundle:
    """A bundle copy with its own small dataset and a checkpoint trained by train.json."""

    root: Path
    dataset_dir: Path

    @property
    def checkpoint(self) -> Path:
        return self.root / "models" / "model.pt"

    def read_test_entries(self) -> list[dict]:
        return json.loads((self.dataset_dir / "datalist.json").read_text())["test"]


def run_bundle(bundle: TrainedBundle, config_files: list[str], *overrides: str) -> str:
    """Run ``python -m monai.bundle run`` in the bundle copy and return its log, or raise with the log if it fails."""
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
        "--bundle_root",
        str(bundle.root),
        "--dataset_dir",
        str(bundle.dataset_dir),
        *overrides,
    ]
    environment = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    result = subprocess.run(command, cwd=bundle.root, env=environment, capture_output=True, text=True, timeout=600)
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"bundle CLI failed with exit code {result.returncode}: {command}\n{log[-6000:]}"
    return log


def read_rows(path: Path) -> dict[str, list[float]]:
    """Read a ClassificationSaver CSV (no header, each line a file name and its values) into ``{file name: values}``."""
    assert path.is_file(), f"expected output file {path} is missing"
    with open(path, newline="") as handle:
        return {row[0]: [float(value) for value in row[1:]] for row in csv.reader(handle) if row}


def read_metrics(path: Path) -> dict[str, float]:
    """Read MetricsSaver's metrics.csv (``name,value`` lines) into a dictionary."""
    assert path.is_file(), f"expected metrics file {path} is missing"
    with open(path, newline="") as handle:
        return {row[0]: float(row[1]) for row in csv.reader(handle) if row}


@pytest.fixture(scope="module")
def trained_bundle(tmp_path_factory: pytest.TempPathFactory) -> TrainedBundle:
    """Copy the bundle, prepare the small dataset beside it, and train it for 2 epochs through the CLI."""
    workspace = tmp_path_factory.mktemp("bundle_configs")
    root = workspace / "modality_classifier"
    outputs = shutil.ignore_patterns("data", "models", "eval", "runs", "__pycache__")
    shutil.copytree(MODALITY_BUNDLE, root, ignore=outputs)
    dataset_dir = workspace / "data"
    prepared = subprocess.run(
        [
            sys.executable,
            "scripts/prepare_data.py",
            "--small",
            "--data-dir",
            str(data_dir()),
            "--output-dir",
            str(dataset_dir),
        ],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert prepared.returncode == 0, f"prepare_data.py --small failed:\n{prepared.stderr[-4000:]}"
    bundle = TrainedBundle(root=root, dataset_dir=dataset_dir)

    run_bundle(bundle, ["configs/train.json"], *TRAIN_OVERRIDES)

    assert bundle.checkpoint.is_file(), f"train.json did not write {bundle.checkpoint}"
    assert not (root / "data").exists(), "--dataset_dir should keep the prepared data out of the bundle folder"
    return bundle


@pytest.fixture(scope="module")
def evaluation(trained_bundle: TrainedBundle) -> dict:
    """Run evaluate.json once on the trained checkpoint, and return its outputs and the checkpoint digests."""
    output_dir = trained_bundle.root / "eval" / "evaluate"
    digest_before = sha256_file(trained_bundle.checkpoint)

    log = run_bundle(trained_bundle, EVALUATE_CONFIGS, "--output_dir", str(output_dir))

    return {
        "log": log,
        "metrics": read_metrics(output_dir / "metrics.csv"),
        "predictions": read_rows(output_dir / "test_predictions.csv"),
        "digest_before": digest_before,
        "digest_after": sha256_file(trained_bundle.checkpoint),
    }


def test_evaluate_predicts_every_test_image(trained_bundle: TrainedBundle, evaluation: dict):
    entries = trained_bundle.read_test_entries()
    expected_files = {str(trained_bundle.dataset_dir / entry["image"]) for entry in entries}
    predictions = evaluation["predictions"]

    assert set(predictions) == expected_files, (
        f"test_predictions.csv should list the {len(expected_files)} test images, got {len(predictions)} rows; "
        f"missing: {sorted(expected_files - set(predictions))[:3]}"
    )
    labels = {str(trained_bundle.dataset_dir / entry["image"]): entry["label"] for entry in entries}
    for path, (predicted, label) in predictions.items():
        assert label == labels[path], f"{path}: saved label {label}, datalist label {labels[path]}"
        assert predicted in (0.0, 1.0, 2.0), f"{path}: predicted class {predicted} is not a class index"


def test_evaluate_metrics_match_predictions(evaluation: dict):
    metrics = evaluation["metrics"]
    rows = list(evaluation["predictions"].values())

    expected_accuracy = sum(predicted == label for predicted, label in rows) / len(rows)
    assert metrics["accuracy"] == pytest.approx(expected_accuracy), (
        f"metrics.csv accuracy {metrics['accuracy']} differs from the share of correct rows {expected_accuracy}"
    )
    for index, name in enumerate(CLASS_NAMES):
        members = [predicted for predicted, label in rows if label == index]
        expected = sum(predicted == index for predicted in members) / len(members)
        key = f"accuracy_{name}"
        assert key in metrics, f"metrics.csv lacks {key}: {sorted(metrics)}"
        assert metrics[key] == pytest.approx(expected), f"{key} is {metrics[key]}, the rows give {expected}"
    assert "Restored all variables from" in evaluation["log"], "evaluate.json should load the checkpoint"


def test_evaluate_leaves_checkpoint_unchanged(evaluation: dict):
    assert evaluation["digest_after"] == evaluation["digest_before"], (
        "evaluate.json changed models/model.pt; train.json's CheckpointSaver must not run during evaluation"
    )


def test_evaluate_loads_wrapped_checkpoint(trained_bundle: TrainedBundle, evaluation: dict):
    # A revision keeps the layout of the original, so both a bare state_dict and {"model": state_dict} must load.
    weights = torch.load(trained_bundle.checkpoint, weights_only=True)
    wrapped = trained_bundle.root / "models" / "wrapped.pt"
    torch.save({"model": weights}, wrapped)
    output_dir = trained_bundle.root / "eval" / "wrapped"

    run_bundle(
        trained_bundle,
        EVALUATE_CONFIGS,
        "--evaluate#checkpoint",
        str(wrapped),
        "--output_dir",
        str(output_dir),
    )

    metrics = read_metrics(output_dir / "metrics.csv")
    assert metrics["accuracy"] == pytest.approx(evaluation["metrics"]["accuracy"]), (
        f"the wrapped checkpoint gave accuracy {metrics['accuracy']}, the bare one {evaluation['metrics']['accuracy']}"
    )


def test_inference_matches_evaluation(trained_bundle: TrainedBundle, evaluation: dict):
    output_dir = trained_bundle.root / "eval" / "inference"

    run_bundle(trained_bundle, ["configs/inference.json"], "--output_dir", str(output_dir))

    predictions = read_rows(output_dir / "predictions.csv")
    probabilities = read_rows(output_dir / "probabilities.csv")
    evaluated = evaluation["predictions"]
    assert set(predictions) == set(evaluated), "inference.json should predict the same test images as evaluate.json"
    assert set(probabilities) == set(predictions), "probabilities.csv and predictions.csv should list the same images"
    for path, (predicted,) in predictions.items():
        assert predicted == evaluated[path][0], (
            f"{path}: inference predicts {predicted}, evaluation {evaluated[path][0]}; the preprocessing differs"
        )
        values = probabilities[path]
        assert len(values) == len(CLASS_NAMES), f"{path}: expected {len(CLASS_NAMES)} probabilities, got {values}"
        assert sum(values) == pytest.approx(1.0, abs=1e-4), f"{path}: probabilities do not sum to 1: {values}"
        assert max(range(len(values)), key=values.__getitem__) == predicted, f"{path}: argmax differs from prediction"


def test_inference_reads_datalist_from_cli(trained_bundle: TrainedBundle, tmp_path: Path):
    # A datalist elsewhere, in the Decathlon form of a "test" list of image paths relative to the datalist's folder.
    entries = trained_bundle.read_test_entries()[:3]
    for entry in entries:
        target = tmp_path / "images" / Path(entry["image"]).name
        target.parent.mkdir(exist_ok=True)
        shutil.copy2(trained_bundle.dataset_dir / entry["image"], target)
    datalist_file = tmp_path / "datalist.json"
    datalist_file.write_text(json.dumps({"test": [f"images/{Path(entry['image']).name}" for entry in entries]}))
    output_dir = tmp_path / "predictions"

    run_bundle(
        trained_bundle,
        ["configs/inference.json"],
        "--datalist_file",
        str(datalist_file),
        "--output_dir",
        str(output_dir),
    )

    predictions = read_rows(output_dir / "predictions.csv")
    expected = {str(tmp_path / "images" / Path(entry["image"]).name) for entry in entries}
    assert set(predictions) == expected, f"expected predictions for {sorted(expected)}, got {sorted(predictions)}"
