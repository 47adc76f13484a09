"""End-to-end tests: the hippocampus segmentation bundle trained, evaluated and revised through the real bundle CLI.

The bundle is copied to a temporary folder and its datalist is built from 24 real MSD hippocampus cases. Its 3D UNet is
trained by the bundle's own train.json for 6 epochs, and each unlearning overlay runs through
``python -m monai.bundle run`` as the docs show. Budget of this file: about 90 s on 2 CPU cores with one torch
thread.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPOSITORY, data_dir
from monai_unlearn.utils import sha256_file
from test_bundle_cli import bundle_cli

BUNDLE = REPOSITORY / "bundles" / "hippocampus_segmentation"
# With 17 training cases, small batches and a large learning rate give a segmenter of both labels in 6 epochs.
SMALL = ["--batch_size", "2"]
TRAIN_OVERRIDES = ["--num_epochs", "6", "--val_interval", "3", "--learning_rate", "0.01", *SMALL]
UNLEARN = ["configs/train.json", "configs/unlearn.json"]


@pytest.fixture(scope="module")
def trained_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the bundle with the small datalist and a 3D model trained by its own train.json."""
    bundle = tmp_path_factory.mktemp("segmentation") / "hippocampus_segmentation"
    shutil.copytree(BUNDLE, bundle, ignore=shutil.ignore_patterns("data", "models", "eval", "__pycache__"))
    subprocess.run(
        [sys.executable, "scripts/prepare_data.py", "--small", "--data-dir", str(data_dir())],
        cwd=bundle,
        check=True,
        capture_output=True,
        text=True,
    )
    bundle_cli(bundle, ["configs/train.json"], *TRAIN_OVERRIDES)
    models = bundle / "models"
    assert (models / "model.pt").is_file(), "train.json should have written models/model.pt"
    assert (models / "training_time.json").is_file(), "train.json should have recorded the training time"
    shutil.copy2(models / "model.pt", models / "trained.pt")
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


def read_report(bundle: Path, name: str, variant: str = "") -> dict:
    path = bundle / "eval" / variant / f"unlearning_{name}" / "unlearning_report.json"
    assert path.is_file(), f"the revision should have written {path}"
    return json.loads(path.read_text())


def test_forget_label_removes_posterior_through_cli(bundle: Path):
    overrides = ["--unlearn#passes", "3", "--unlearn#learning_rate", "0.003"]
    bundle_cli(bundle, [*UNLEARN, "configs/forget_label.json"], *SMALL, *overrides)

    report = read_report(bundle, "label")
    retired = report["segmentation"]["retired_labels"]["posterior"]
    assert retired["original"]["predicted_voxels"] > 1000, f"the trained model should predict posterior: {retired}"
    assert retired["revised"]["predicted_voxels"] == 0, f"no voxel may be predicted posterior after: {retired}"
    assert all(d <= 0.05 for d in retired["revised"]["dice"].values()), f"posterior Dice must vanish: {retired}"
    models = report["segmentation"]["models"]
    before, after = models["original"]["held_out_dice"]["anterior"], models["revised"]["held_out_dice"]["anterior"]
    assert after >= before - 0.1, f"held-out anterior Dice fell from {before:.3f} to {after:.3f}"
    assert report["method"]["exclude_classes"] == [1, 2], f"the overlay retires into background: {report['method']}"
    assert report["passes"][0]["retain_samples"] == 0, "label forgetting makes every case a forget case"


def test_forget_cases_reports_oracle_and_mia(bundle: Path):
    oracle_configs = [*UNLEARN, "configs/forget_cases.json", "configs/oracle.json"]
    # The oracle's quality does not matter here, only that the report finds it, so it trains for 2 epochs.
    bundle_cli(bundle, oracle_configs, "--num_epochs", "2", "--val_interval", "2", "--learning_rate", "0.01", *SMALL)
    oracle = bundle / "models" / "oracle_cases" / "model.pt"
    assert oracle.is_file(), "oracle.json should train the retrain oracle into models/oracle_cases"

    bundle_cli(bundle, [*UNLEARN, "configs/forget_cases.json"], *SMALL, "--unlearn#passes", "2")

    report = read_report(bundle, "cases")
    assert_no_case_ids(bundle)
    section = report["segmentation"]
    assert set(section["models"]) == {"original", "revised", "oracle"}, f"three models expected: {section['models']}"
    for model in ("original", "revised", "oracle"):
        mia = section["models"][model]["mia"]
        assert mia["members"] == 4, f"{model}: the attack should use the 4 forget cases: {mia}"
        assert mia["non_members"] == 5, f"{model}: the attack should use the 5 held-out cases: {mia}"
        assert 0.0 <= mia["auc"] <= 1.0, f"{model}: AUC out of range: {mia}"
    assert "mean_dice_gap" in section["gap_to_oracle"]["revised"], "the gap to the oracle must be reported"
    assert report["timing"]["speedup"] > 0, f"the revision should be compared with training: {report['timing']}"
    assert report["timing"]["speedup_vs_oracle"] > 0, f"and with the oracle's training: {report['timing']}"
    assert report["timing"]["process_speedup"] > 0, f"the CPU times should be compared too: {report['timing']}"
    assert report["oracle"]["sha256"] == sha256_file(oracle), "the report must identify the oracle checkpoint"


def assert_no_case_ids(bundle: Path) -> None:
    lines = (bundle / "data" / "deletion_request.txt").read_text().splitlines()
    requested = [line for line in lines if not line.startswith("#")]
    folder = bundle / "eval" / "unlearning_cases"
    text = (folder / "unlearning_report.json").read_text() + (folder / "unlearning_report.md").read_text()
    assert len(requested) == 4, f"the small datalist should come with a deletion request of 4 cases: {requested}"
    for case_id in requested:
        assert case_id not in text, f"the report must not contain the requested case ID {case_id}"
    assert "<4 case IDs>" in text, "the report should describe the rule by its count of case IDs"


def test_forget_outliers_selects_upper_volumes(bundle: Path):
    bundle_cli(bundle, [*UNLEARN, "configs/forget_outliers.json"], *SMALL, "--unlearn#passes", "1")

    report = read_report(bundle, "outliers")
    datalist = json.loads((bundle / "data" / "datalist.json").read_text())
    volumes = sorted(e["hippocampus_volume_ml"] for e in datalist["training"])
    expected = sum(v > float(np.percentile(volumes, 90)) for v in volumes)
    assert "percentile 90" in report["forget_rule"], f"the rule should record its percentile: {report['forget_rule']}"
    assert report["splits"]["train"]["before"]["forget_cases"] == expected, (
        f"expected {expected} training cases above the 90th percentile, report: {report['splits']['train']['before']}"
    )
    assert report["passes"][0]["forget_samples"] == expected, "the forget loader should hold the outlier cases"


def test_2d_variant_forgets_label_through_cli(bundle: Path):
    two_d = ["configs/train.json", "configs/train_2d.json"]
    bundle_cli(bundle, two_d, "--num_epochs", "2", "--val_interval", "2", "--slices_per_case", "4")
    assert (bundle / "models" / "2d" / "model.pt").is_file(), "the 2D variant should train into models/2d"

    bundle_cli(bundle, [*two_d, "configs/unlearn.json", "configs/forget_label.json"], "--slices_per_case", "4")

    report = read_report(bundle, "label", variant="2d")
    retired = report["segmentation"]["retired_labels"]["posterior"]
    assert retired["revised"]["predicted_voxels"] < retired["original"]["predicted_voxels"], retired
    assert report["splits"]["test"]["before"]["cases"] == 5, "the 2D network is evaluated on whole test volumes"


def test_evaluate_config_writes_per_label_dice(bundle: Path):
    bundle_cli(bundle, ["configs/train.json", "configs/evaluate.json"], *SMALL)

    summary = bundle / "eval" / "test_mean_dice_summary.csv"
    assert summary.is_file(), "evaluate.json should write the Dice summary with MetricsSaver"
    rows = [line.split(",")[0] for line in summary.read_text().splitlines()]
    assert rows == ["class", "class0", "class1", "mean"], f"one row per foreground label and the mean, got {rows}"


def test_inference_config_writes_label_maps(bundle: Path):
    import nibabel as nib

    bundle_cli(bundle, ["configs/train.json", "configs/inference.json"], *SMALL)

    outputs = sorted((bundle / "eval" / "predictions").glob("*_seg.nii.gz"))
    datalist = json.loads((bundle / "data" / "datalist.json").read_text())
    assert len(outputs) == len(datalist["test"]), f"one label map per test image, got {len(outputs)}"
    first = datalist["test"][0]
    prediction = nib.load(str(bundle / "eval" / "predictions" / f"{first['case_id']}_seg.nii.gz"))
    assert list(prediction.shape[:3]) == first["shape"], "predictions must be inverted to the original image size"
    assert set(np.unique(np.asarray(prediction.dataobj)).tolist()) <= {0, 1, 2}, "predictions hold label values"


def test_missing_deletion_request_names_file(tmp_path: Path):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(BUNDLE / name) for name in (*UNLEARN, "configs/forget_cases.json")])
    parser["bundle_root"] = str(tmp_path)
    parser["forget_case_ids_file"] = str(tmp_path / "missing.txt")

    with pytest.raises(RuntimeError, match="Failed to instantiate component") as info:
        parser.get_parsed_content("forget_rule")

    cause = info.value.__cause__
    assert isinstance(cause, FileNotFoundError), f"the cause should be the missing file, got {cause!r}"
    assert "missing.txt" in str(cause), f"the error should name the missing case ID list: {cause}"


def test_oracle_overlay_restores_training_components():
    train = json.loads((BUNDLE / "configs" / "train.json").read_text())
    oracle = json.loads((BUNDLE / "configs" / "oracle.json").read_text())
    assert oracle["train#trainer"] == train["train"]["trainer"], "oracle.json must train with train.json's trainer"
    assert oracle["optimizer"] == train["optimizer"], "oracle.json must train with train.json's optimizer"


def test_metadata_passes_bundle_schema():
    from monai_unlearn.bundle.metadata import verify_bundle_metadata

    verify_bundle_metadata(BUNDLE / "configs" / "metadata.json")


def test_revise_command_forgets_cases(bundle: Path):
    from test_revise_bundles import monai_unlearn_cli

    lines = (bundle / "data" / "deletion_request.txt").read_text().splitlines()
    request = [line for line in lines if line and not line.startswith("#")]
    assert request, "the small datalist should come with a deletion request"
    original_sha = sha256_file(bundle / "models" / "model.pt")
    version_before = json.loads((bundle / "configs" / "metadata.json").read_text())["version"]
    rule = "case_id in {" + ", ".join(repr(case_id) for case_id in request) + "}"

    monai_unlearn_cli(
        "revise", str(bundle), "--forget", rule, "--method", "psg_retain", "--epsilon", "0.05", "--box", "0,1", "--passes", "1",
        *("--set", "batch_size=2"),
    )

    kept = bundle / "models" / f"model.original-{original_sha[:12]}.pt"
    assert kept.is_file(), f"the original checkpoint should be kept as {kept.name}"
    assert sha256_file(kept) == original_sha, "the kept original must be byte-identical to the trained checkpoint"
    assert sha256_file(bundle / "models" / "model.pt") != original_sha, "the revision should change the weights"
    metadata_text = (bundle / "configs" / "metadata.json").read_text()
    metadata = json.loads(metadata_text)
    assert metadata["version"] != version_before, f"the revision should bump the version from {version_before}"
    leaked = [case_id for case_id in request if case_id in metadata_text]
    assert not leaked, f"the changelog must not show forgotten case IDs in clear: {leaked}"
