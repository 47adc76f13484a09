"""The retrain oracle through the real bundle CLI: training, cache reuse, cache invalidation, and a revision whose
report sets the oracle beside the original and revised models.

The example bundle is copied to a temporary folder and pointed at the small real dataset of the ``modality_small``
fixture. The oracle is trained once (1 epoch) and the original model once (4 epochs); every other check reads the cache
or plans without training. Budget: about 35 s on 2 cores, most of it the three bundle CLI runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import MODALITY_BUNDLE
from monai_unlearn.oracle import KEY_FILE, OracleResult, plan_oracle, train_oracle
from monai_unlearn.utils import sha256_file

ENVIRONMENT = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
ORACLE_EPOCHS = {"num_epochs": 1, "val_interval": 1}


@pytest.fixture(scope="module")
def bundle(modality_small, tmp_path_factory) -> Path:
    """A copy of the example bundle without data, models or outputs."""
    destination = tmp_path_factory.mktemp("oracle_bundle") / "modality_classifier"
    shutil.copytree(
        MODALITY_BUNDLE, destination, ignore=shutil.ignore_patterns("data", "models", "eval", "secrets", "__pycache__")
    )
    return destination


@pytest.fixture(scope="module")
def dataset_override(modality_small) -> dict:
    return {"dataset_dir": str(modality_small["folder"])}


@pytest.fixture(scope="module")
def oracle(bundle, dataset_override) -> OracleResult:
    """The bundle's retrain oracle for the overlay's rule (forget the breast ultrasound class), trained once."""
    return train_oracle(bundle, overrides={**dataset_override, **ORACLE_EPOCHS}, environment=ENVIRONMENT)


def forgotten_case_ids(modality_small) -> list[str]:
    return sorted({e["case_id"] for e in modality_small["datalist"]["training"] if e["label"] == 1})


def test_first_call_trains_oracle(oracle, modality_small):
    assert not oracle.reused, "the first call must train the oracle"
    assert oracle.checkpoint.is_file(), f"the oracle's weights should be at {oracle.checkpoint}"
    record = json.loads((oracle.entry_dir / KEY_FILE).read_text())
    assert record["checkpoint_sha256"] == sha256_file(oracle.checkpoint), "the key file must record the weights' digest"
    training = modality_small["datalist"]["training"]
    assert record["inputs"]["retain"]["samples"] == sum(e["label"] != 1 for e in training), "retain count"
    assert record["inputs"]["forget"]["cases"] == len(forgotten_case_ids(modality_small)), "forget case count"
    assert record["inputs"]["seed"] == 0, f"the default seed is 0: {record['inputs']['seed']}"
    assert record["training"]["epochs"] == 1, f"the training record should be kept: {record['training']}"


def test_second_call_reuses_cache(oracle, bundle, dataset_override):
    log_mtime = (oracle.entry_dir / "oracle_training.log").stat().st_mtime_ns
    again = train_oracle(bundle, overrides={**dataset_override, **ORACLE_EPOCHS}, environment=ENVIRONMENT)
    assert again.reused, "a second call with the same inputs must reuse the cached oracle"
    assert again.record["run_id"] == oracle.record["run_id"], "the cache entry's training run changed"
    assert again.checkpoint == oracle.checkpoint, "the reused oracle should be the same file"
    assert (oracle.entry_dir / "oracle_training.log").stat().st_mtime_ns == log_mtime, "the bundle CLI ran again"


def test_command_line_reuses_cache(oracle, bundle, dataset_override, capsys):
    from monai_unlearn.cli import main as monai_unlearn_main
    from monai_unlearn.oracle.__main__ import main as oracle_main

    settings = {**dataset_override, **ORACLE_EPOCHS}
    overrides = [f"--override={key}={json.dumps(value)}" for key, value in settings.items()]
    arguments = ["--bundle-root", str(bundle), *overrides]
    assert oracle_main(arguments) == 0, "python -m monai_unlearn.oracle should succeed"
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(oracle.checkpoint), "the last line is the checkpoint"
    assert monai_unlearn_main(["oracle", *arguments]) == 0, "monai-unlearn oracle should succeed"
    output = capsys.readouterr().out
    assert "reused from the cache" in output, f"monai-unlearn oracle should reuse the cache: {output}"
    assert output.strip().splitlines()[-1] == str(oracle.checkpoint), f"the last line is the checkpoint: {output}"


@pytest.mark.parametrize(
    "change",
    [
        {"forget_rule": "label in {2}"},
        {"seed": 1},
        {"overrides": {"learning_rate": 0.001}},
    ],
    ids=["rule", "seed", "config"],
)
def test_changed_input_needs_new_oracle(oracle, bundle, dataset_override, change):
    arguments = {"overrides": {**dataset_override, **ORACLE_EPOCHS}}
    for key, value in change.items():
        arguments[key] = {**arguments[key], **value} if key == "overrides" else value
    plan = plan_oracle(bundle, **arguments)
    assert plan.cached is None, f"changing {change} must invalidate the cached oracle"
    assert plan.entry_dir != oracle.entry_dir, "a changed input must get its own cache entry"


def test_changed_config_file_needs_new_oracle(oracle, bundle, dataset_override):
    train = json.loads((bundle / "configs" / "train.json").read_text())
    train["batch_size"] = 32
    (bundle / "configs" / "train_batch32.json").write_text(json.dumps(train))
    plan = plan_oracle(
        bundle,
        config_files=["configs/train_batch32.json", "configs/oracle.json"],
        overrides={**dataset_override, **ORACLE_EPOCHS},
    )
    assert plan.cached is None, "a changed training config must invalidate the cached oracle"


def test_damaged_entry_is_retrained(oracle, bundle, dataset_override, tmp_path):
    cache_copy = tmp_path / "cache"
    shutil.copytree(oracle.entry_dir.parent, cache_copy)
    arguments = dict(cache_dir=cache_copy, overrides={**dataset_override, **ORACLE_EPOCHS})
    assert plan_oracle(bundle, **arguments).cached is not None, "an intact copy of the cache should be valid"

    copied_checkpoint = cache_copy / oracle.entry_dir.name / "models" / "model.pt"
    copied_checkpoint.write_bytes(copied_checkpoint.read_bytes() + b"\0")
    assert plan_oracle(bundle, **arguments).cached is None, "a modified checkpoint must not be reused"

    shutil.copy2(oracle.checkpoint, copied_checkpoint)
    (cache_copy / oracle.entry_dir.name / KEY_FILE).unlink()
    assert plan_oracle(bundle, **arguments).cached is None, "an entry without its key file is incomplete"


def test_failed_training_names_cause(bundle, dataset_override, tmp_path):
    arguments = dict(cache_dir=tmp_path / "cache", overrides={**dataset_override, **ORACLE_EPOCHS})

    with pytest.raises(RuntimeError, match=r"Cause: ValueError: The forget rule .* matches none") as info:
        train_oracle(bundle, forget_rule="label in {7}", environment=ENVIRONMENT, **arguments)

    assert "Values present: label:" in str(info.value), f"the cause should list the labels present: {info.value}"


def test_plan_rejects_missing_seed_key(bundle, dataset_override):
    with pytest.raises(KeyError, match="no seed key 'random_seed'"):
        plan_oracle(bundle, seed_key="random_seed", overrides=dataset_override)


def test_cache_hides_case_ids(oracle, bundle, modality_small):
    salt = (bundle / "secrets" / "audit_salt.txt").read_bytes().strip()
    for path in oracle.entry_dir.rglob("*"):
        if not path.is_file():
            continue
        content = path.read_bytes()
        assert salt not in content, f"{path.name} contains the salt"
        for case_id in forgotten_case_ids(modality_small):
            assert case_id.encode() not in content, f"{path.name} contains the forgotten case ID {case_id}"


def bundle_cli(bundle: Path, config_files: list[str], *overrides: str) -> subprocess.CompletedProcess:
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
    result = subprocess.run(command, cwd=bundle, env=ENVIRONMENT, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise AssertionError(f"bundle CLI failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


@pytest.fixture(scope="module")
def revision_with_oracle(oracle, bundle, dataset_override) -> dict:
    """Train the original with train.json, then revise it with unlearn.json and the oracle checkpoint."""
    dataset = ["--dataset_dir", dataset_override["dataset_dir"]]
    bundle_cli(bundle, ["configs/train.json"], *dataset, "--num_epochs", "4", "--val_interval", "2")
    result = bundle_cli(
        bundle,
        ["configs/train.json", "configs/unlearn.json"],
        *dataset,
        "--unlearn#passes", "2",
        "--batch_size", "16",
        "--unlearn#relearn#max_steps", "10",
        "--unlearn#oracle_checkpoint", str(oracle.checkpoint),
    )
    report_dir = bundle / "eval" / "unlearning"
    return {
        "report": json.loads((report_dir / "unlearning_report.json").read_text()),
        "manifest": json.loads((report_dir / "audit_manifest.json").read_text()),
        "report_dir": report_dir,
        "output": result.stdout + result.stderr,
    }


def test_bundle_report_shows_oracle_and_attacks(revision_with_oracle, oracle):
    report = revision_with_oracle["report"]
    assert report["models"] == ["original", "revised", "oracle"], f"models: {report['models']}"
    assert report["oracle"]["sha256"] == sha256_file(oracle.checkpoint), "the report should identify the oracle"
    forget = report["metrics"]["forget_heldout_accuracy"]
    assert forget["oracle"] <= 0.05, f"an oracle that never saw the class cannot recognise it: {forget}"
    assert set(report["mia"]) == {"original", "revised", "oracle"}, f"attacks ran for {sorted(report['mia'])}"
    assert report["timing"]["oracle_training_seconds"] > 0, "the oracle's training time should be read from its record"
    assert set(report["relearn"]) == {"revised", "oracle"}, f"relearn times: {sorted(report['relearn'])}"
    for name in report["plots"]:
        assert (revision_with_oracle["report_dir"] / name).is_file(), f"plot {name} missing"
    assert len(report["plots"]) == 2, f"expected the bars and the curves, got {report['plots']}"


def test_bundle_audit_manifest(revision_with_oracle, bundle, modality_small):
    manifest = revision_with_oracle["manifest"]
    assert manifest["checkpoints"]["revised_sha256"] == sha256_file(bundle / "models" / "model.pt"), "revised digest"
    assert manifest["forget_set"]["forget_cases"] == len(forgotten_case_ids(modality_small)), manifest["forget_set"]
    recorded = manifest["bundle_config"]
    assert [entry["path"] for entry in recorded["config_files"]] == ["configs/train.json", "configs/unlearn.json"]
    assert recorded["overrides"]["unlearn#passes"] == 2, f"the command-line overrides should be recorded: {recorded}"
    assert recorded["config"]["forget_rule"] == "label in {1}", "the merged config should be recorded"


def test_bundle_outputs_hide_case_ids(revision_with_oracle, bundle, modality_small):
    salt = (bundle / "secrets" / "audit_salt.txt").read_bytes().strip()
    for path in (bundle / "eval").rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert salt not in content, f"{path.name} contains the salt"
            for case_id in forgotten_case_ids(modality_small):
                assert case_id.encode() not in content, f"{path.name} contains the forgotten case ID {case_id}"
    for case_id in forgotten_case_ids(modality_small):
        assert case_id not in revision_with_oracle["output"], f"the bundle CLI log contains {case_id}"
    assert salt.decode() not in revision_with_oracle["output"], "the bundle CLI log contains the salt"
