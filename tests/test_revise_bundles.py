"""End-to-end revisions with the `monai-unlearn revise` command of a bundle in each layout.

The model-zoo layout bundle (bundles/modality_classifier, JSON) and the flat layout test bundle
(tests/bundles/flat_yaml_classifier, YAML) are trained by their own training configs through the bundle CLI, then
revised with the same forget request through `python -m monai_unlearn.cli revise`, which runs the real bundle CLI.
The revised zoo bundle is then evaluated with its evaluate.json and exported with `monai.bundle ckpt_export`.
Budget: about 60 s on 2 cores (two trainings are shared with the other revision tests).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import copy_trained_bundle, run_bundle_cli
from monai_unlearn.bundle import verify_bundle_metadata
from monai_unlearn.utils import sha256_file

REQUEST_ARGUMENTS = [
    "--forget", "label in {1}", "--method", "psg_retain", "--epsilon", "0.1", "--box", "0,1", "--passes", "2",
    "--lr", "0.001", "--set", "batch_size=16",
]


def monai_unlearn_cli(*arguments: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python -m monai_unlearn.cli ARGUMENTS`` (the ``monai-unlearn`` entry point) with one thread."""
    environment = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    command = [sys.executable, "-m", "monai_unlearn.cli", *arguments]
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"monai-unlearn failed ({' '.join(command)}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def config_digests(bundle: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted((bundle / "configs").iterdir()) if p.is_file()}


class RevisedBundle:
    """A bundle copy revised through the CLI, with what was recorded before the revision."""

    def __init__(self, folder: Path, original_sha: str, configs_before: dict[str, str], output: str):
        self.folder = folder
        self.original_sha = original_sha
        self.configs_before = configs_before
        self.output = output

    @property
    def metadata(self) -> dict:
        return json.loads((self.folder / "configs" / "metadata.json").read_text())


def revise_copy(trained: Path, folder: Path) -> RevisedBundle:
    bundle = copy_trained_bundle(trained, folder)
    original_sha = sha256_file(bundle / "models" / "model.pt")
    configs_before = config_digests(bundle)
    result = monai_unlearn_cli("revise", str(bundle), *REQUEST_ARGUMENTS)
    return RevisedBundle(bundle, original_sha, configs_before, result.stdout + result.stderr)


@pytest.fixture(scope="module")
def revised_zoo(trained_zoo_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> RevisedBundle:
    return revise_copy(trained_zoo_bundle, tmp_path_factory.mktemp("revised") / "zoo")


@pytest.fixture(scope="module")
def revised_flat(trained_flat_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> RevisedBundle:
    return revise_copy(trained_flat_bundle, tmp_path_factory.mktemp("revised") / "flat")


@pytest.fixture(params=["zoo", "flat"])
def revised(request: pytest.FixtureRequest) -> RevisedBundle:
    return request.getfixturevalue(f"revised_{request.param}")


def test_original_kept_under_hash_name(revised: RevisedBundle):
    models = revised.folder / "models"
    backup = models / f"model.original-{revised.original_sha[:12]}.pt"
    assert backup.is_file(), f"the original should be kept as {backup.name}; models/ has {sorted(os.listdir(models))}"
    assert sha256_file(backup) == revised.original_sha, "the kept original differs from the trained checkpoint"
    assert sha256_file(models / "model.pt") != revised.original_sha, "models/model.pt should hold the revised weights"
    leftovers = [p.name for p in models.iterdir() if p.name.endswith(".tmp") or p.name == "revision_checkpoints"]
    assert not leftovers, f"the revision left temporary files: {leftovers}"


def test_revised_weights_keep_layout(revised: RevisedBundle):
    models = revised.folder / "models"
    original = torch.load(models / f"model.original-{revised.original_sha[:12]}.pt", weights_only=True)
    revised_weights = torch.load(models / "model.pt", weights_only=True)
    assert revised_weights.keys() == original.keys(), "the revised checkpoint should be a state_dict with the same keys"


def test_version_bumped_with_changelog(revised: RevisedBundle):
    metadata = revised.metadata
    expected = {"zoo": "0.1.1", "flat": "1.0.1"}["zoo" if "zoo" in revised.folder.name else "flat"]
    assert metadata["version"] == expected, f"expected a patch bump to {expected}, got {metadata['version']}"
    entry = metadata["changelog"][expected]
    assert list(metadata["changelog"])[0] == expected, "the new entry should come first"
    for fact in ("`label in [1]`", "60 forgotten, 121 retained", "psg_retain", "epsilon=0.1", "passes=2", "lr=0.001"):
        assert fact in entry, f"the changelog entry lacks {fact!r}: {entry}"
    assert "validation: forget_accuracy" in entry, f"the entry should carry the report's metrics: {entry}"
    assert revised.original_sha in entry, "the entry should record the original weights' digest"
    assert sha256_file(revised.folder / "models" / "model.pt") in entry, "the entry should record the revised digest"


def test_revised_metadata_passes_schema(revised: RevisedBundle):
    verify_bundle_metadata(revised.folder / "configs" / "metadata.json")


def test_only_metadata_and_overlay_change(revised: RevisedBundle):
    after = config_digests(revised.folder)
    overlay = "revise.json" if "zoo" in revised.folder.name else "revise.yaml"
    assert set(after) == set(revised.configs_before) | {overlay}, f"unexpected config files: {sorted(after)}"
    changed = sorted(name for name, digest in revised.configs_before.items() if after[name] != digest)
    assert changed == ["metadata.json"], f"only metadata.json may change, changed: {changed}"


def test_overlay_reruns_with_printed_command(revised: RevisedBundle):
    assert "python -m monai.bundle run revise --config_file" in revised.output.replace(sys.executable, "python"), (
        f"the CLI should print the bundle command:\n{revised.output[-2000:]}"
    )


def test_report_shows_class_forgotten(revised_flat: RevisedBundle):
    report = json.loads((revised_flat.folder / "eval" / "unlearning" / "unlearning_report.json").read_text())
    validation = report["splits"]["validation"]
    assert validation["before"]["forget_accuracy"] >= 0.8, f"the trained bundle should know the class: {validation}"
    assert validation["after"]["forget_accuracy"] <= 0.2, f"the class should be forgotten: {validation['after']}"


def test_revised_zoo_bundle_evaluates(revised_zoo: RevisedBundle):
    bundle = revised_zoo.folder
    run_bundle_cli(
        bundle,
        ["run", "--config_file", "['configs/train.json','configs/evaluate.json']", "--meta_file",
         "configs/metadata.json", "--logging_file", "configs/logging.conf"],
    )
    metrics = (bundle / "eval" / "metrics.csv").read_text()
    assert "accuracy" in metrics, f"evaluate.json should write its metrics: {metrics}"


def test_revised_zoo_bundle_exports_torchscript(revised_zoo: RevisedBundle):
    bundle = revised_zoo.folder
    run_bundle_cli(
        bundle,
        ["ckpt_export", "network_def", "--filepath", "models/model.ts", "--ckpt_file", "models/model.pt",
         "--meta_file", "configs/metadata.json", "--config_file", "configs/train.json"],
    )
    from monai.data import load_net_with_metadata

    network, meta, _ = load_net_with_metadata(str(bundle / "models" / "model.ts"))
    assert meta["version"] == "0.1.1", f"the TorchScript model should carry the bumped metadata, got {meta['version']}"
    weights = torch.load(bundle / "models" / "model.pt", weights_only=True)
    scripted = dict(network.state_dict())
    assert all(torch.equal(scripted[k], weights[k]) for k in weights), "the export should hold the revised weights"


def test_cli_reports_bad_rule_in_one_line(trained_flat_bundle: Path, tmp_path: Path):
    bundle = copy_trained_bundle(trained_flat_bundle, tmp_path / "flat")
    result = monai_unlearn_cli("revise", str(bundle), "--forget", "label in {7}", "--epsilon", "0.1", check=False)
    assert result.returncode == 1, f"a bad rule should exit with 1, got {result.returncode}"
    assert "monai-unlearn revise: error: The forget rule \"label in [7]\" matches none" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, "bad input should not print a traceback"


def test_hand_written_overlay_revises_and_records(trained_zoo_bundle: Path, tmp_path: Path):
    bundle = copy_trained_bundle(trained_zoo_bundle, tmp_path / "zoo")
    original_sha = sha256_file(bundle / "models" / "model.pt")
    monai_unlearn_cli(
        "revise", str(bundle), "--overlay", "configs/unlearn.json", "--set", "unlearn#passes=1", "--set", "batch_size=16"
    )
    assert sha256_file(bundle / "models" / f"model.original-{original_sha[:12]}.pt") == original_sha
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert metadata["version"] == "0.1.1", "a hand-written overlay without the metadata handler still bumps the version"
    entry = metadata["changelog"]["0.1.1"]
    assert "`label in [1]` (60 forgotten, 121 retained)" in entry, f"the rule and counts should be recorded: {entry}"
    assert "test: forget_accuracy" in entry, f"the metrics of the overlay's report should be recorded: {entry}"
