"""The evaluation handlers on a real revision: metrics and curves, membership inference, the report with the oracle
beside the original and revised models, the plots, the audit manifest, and no case ID in clear anywhere.

One revision of the small modality classifier (2 passes, psg_retain) runs once per module with every handler
attached. The forget set is a list of case IDs, as for patients' deletion requests, and the oracle is the same
DenseNet trained on the retain set only. Budget: about 15 s on one CPU thread.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset
from PIL import Image

from conftest import train_modality_network
from monai_unlearn.engines import UnlearningTrainer
from monai_unlearn.handlers import (
    AuditManifest,
    MembershipInference,
    RevisionSaver,
    UnlearningMetrics,
    UnlearningReport,
    get_evaluation_record,
)
from monai_unlearn.transforms import CaseIdIn, TagForgetd

CLASS_NAMES = ["chest_xray", "breast_ultrasound", "brain_mri"]
SALT = "a-test-salt-that-is-long-enough-0123456789"
PASSES = 2


@pytest.fixture(autouse=True)
def _one_thread(single_torch_thread):
    yield


class LogCollector(logging.Handler):
    """Keep the formatted text of every log record."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def train_on(entries: list[dict]) -> torch.nn.Module:
    return train_modality_network(entries, seed=1)


@dataclass
class RevisionRun:
    trainer: UnlearningTrainer
    forget_ids: list[str]
    output_dir: Path
    log_text: str
    report: dict
    markdown: str
    manifest: dict


def evaluation_loader(entries: list[dict], rule) -> DataLoader:
    return DataLoader(Dataset([dict(e) for e in entries], transform=TagForgetd(rule)), batch_size=64)


def psg_trainer(network: torch.nn.Module, entries: list[dict], rule: str = "label in {1}") -> UnlearningTrainer:
    """A one-pass psg revision of ``network`` on ``entries`` tagged by ``rule``."""
    return UnlearningTrainer(
        device="cpu",
        max_epochs=1,
        train_data_loader=evaluation_loader(entries, rule),
        network=network,
        optimizer=torch.optim.Adam(network.parameters(), lr=1e-3),
        method="psg",
        method_kwargs={"epsilon": 0.1, "box": (0.0, 1.0)},
    )


@pytest.fixture(scope="module")
def revision(modality_classifier, tmp_path_factory) -> RevisionRun:
    """Revise the classifier to forget a third of the training cases, with every evaluation handler attached."""
    output_dir = tmp_path_factory.mktemp("evaluation_handlers")
    train, test = modality_classifier.train, modality_classifier.test
    rng = np.random.default_rng(0)
    case_ids = sorted({e["case_id"] for e in train})
    forget_ids = sorted(rng.choice(case_ids, size=len(case_ids) // 3, replace=False).tolist())
    id_file = output_dir / "deletion_request.txt"
    id_file.write_text("\n".join(forget_ids) + "\n")
    rule = CaseIdIn(str(id_file))

    oracle = train_on([e for e in train if e["case_id"] not in set(forget_ids)])
    oracle_path = output_dir / "oracle" / "model.pt"
    oracle_path.parent.mkdir()
    torch.save(oracle.state_dict(), oracle_path)

    network = copy.deepcopy(modality_classifier.network)
    checkpoint = output_dir / "model.pt"
    torch.save(network.state_dict(), checkpoint)
    train_loader = DataLoader(
        Dataset([dict(e) for e in train], transform=TagForgetd(rule)),
        batch_size=32,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    trainer = UnlearningTrainer(
        device="cpu",
        max_epochs=PASSES,
        train_data_loader=train_loader,
        network=network,
        optimizer=torch.optim.Adam(network.parameters(), lr=1e-3),
        method="psg_retain",
        method_kwargs={"epsilon": 0.1, "box": (0.0, 1.0)},
        batchnorm="eval",
    )
    loaders = {"train": evaluation_loader(train, rule), "test": evaluation_loader(test, rule)}
    report_dir = output_dir / "report"
    handlers = [
        RevisionSaver(checkpoint),
        UnlearningMetrics(
            loaders, class_names=CLASS_NAMES, oracle_checkpoint=oracle_path, relearn={"max_steps": 20, "batch_size": 32}
        ),
        MembershipInference(every_pass=True),
        AuditManifest(report_dir, rule, train, salt=SALT, config={"forget_rule": f"CaseIdIn({forget_ids[:3]})"}),
        UnlearningReport(report_dir, loaders, class_names=CLASS_NAMES, forget_rule=rule),
    ]
    for handler in handlers:
        handler.attach(trainer)

    collector = LogCollector()
    collector.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(collector)
    root.setLevel(logging.DEBUG)
    try:
        trainer.run()
    finally:
        root.removeHandler(collector)
        root.setLevel(previous_level)
    return RevisionRun(
        trainer=trainer,
        forget_ids=forget_ids,
        output_dir=output_dir,
        log_text="\n".join(collector.lines),
        report=json.loads((report_dir / "unlearning_report.json").read_text()),
        markdown=(report_dir / "unlearning_report.md").read_text(),
        manifest=json.loads((report_dir / "audit_manifest.json").read_text()),
    )


def test_metrics_handler_keeps_curves(revision):
    record = get_evaluation_record(revision.trainer)
    assert record is not None, "UnlearningMetrics should publish its record on engine.state"
    assert [number for number, _ in record.curves] == list(range(PASSES + 1)), "expected pass 0 (original) to the last"
    for row in revision.report["curves"]:
        for key in ("forget_train_accuracy", "retain_accuracy", "test_accuracy"):
            assert isinstance(row.get(key), float), f"curve row of pass {row['pass']} lacks {key}: {row}"
    last = revision.report["curves"][-1]["forget_train_accuracy"]
    assert last == revision.report["metrics"]["forget_train_accuracy"]["revised"], "the last pass is the revised model"
    assert "forget_train_accuracy" in revision.trainer.state.metrics, "headline metrics belong in engine.state.metrics"


def test_case_rule_leaves_heldout_unflagged(revision):
    metrics = revision.report["metrics"]
    assert metrics["forget_heldout_accuracy"]["original"] is None, "test cases are never in a training deletion request"
    non_member_set = revision.report["mia"]["original"]["loss_threshold"]["details"]["non_member_set"]
    assert non_member_set == "held-out samples matched to the forget set's classes", non_member_set


def test_report_sets_oracle_beside_original_and_revised(revision):
    report = revision.report
    assert report["models"] == ["original", "revised", "oracle"], f"models in the report: {report['models']}"
    for key in ("forget_train_accuracy", "retain_accuracy", "test_accuracy", "mia_efficacy", "mia_loss_threshold_auc"):
        values = report["metrics"][key]
        assert all(isinstance(values[model], float) for model in report["models"]), f"{key} lacks a model: {values}"
    for model in ("original", "revised"):
        gap = report["gap"][model]
        assert gap["mean"] is not None and gap["mean"] >= 0, f"the {model} model needs a mean gap to the oracle: {gap}"
        expected = abs(report["metrics"]["retain_accuracy"][model] - report["metrics"]["retain_accuracy"]["oracle"])
        assert gap["per_metric"]["retain_accuracy"] == pytest.approx(expected), "a gap is an absolute difference"
    assert report["splits"]["test"]["oracle"]["accuracy"] == report["metrics"]["test_accuracy"]["oracle"]
    assert "| metric | original | revised | oracle |" in revision.markdown, "the Markdown summary needs all 3 models"


def test_membership_inference_for_every_model(revision):
    attacks = revision.report["mia"]
    assert set(attacks) == {"original", "revised", "oracle"}, f"attacks ran for {sorted(attacks)}"
    for model, results in attacks.items():
        assert set(results) == {"loss_threshold", "loss_logistic", "confidence_svc", "entropy_svc"}, model
        for name, result in results.items():
            assert result["skipped"] is None, f"{model} {name} was skipped: {result['skipped']}"
            assert 0.0 <= result["auc"] <= 1.0, f"{model} {name} AUC {result['auc']}"
        assert 0.0 <= results["confidence_svc"]["mia_efficacy"] <= 1.0, f"{model} MIA-efficacy out of range"
    assert all("mia_efficacy" in row for row in revision.report["curves"]), "every_pass should attack each pass"
    assert "## Membership inference" in revision.markdown, "the Markdown report lacks the attack table"


def test_relearn_times_for_revised_and_oracle(revision):
    relearn = revision.report["relearn"]
    assert set(relearn) == {"revised", "oracle"}, f"relearn times for {sorted(relearn)}"
    target = revision.report["metrics"]["forget_train_accuracy"]["original"]
    for model, result in relearn.items():
        assert result["target"] == pytest.approx(target), f"{model}: the target is the original's forget accuracy"
        assert result["settings"]["optimizer"] == "sgd", f"{model}: the default relearn optimizer is SGD: {result}"
        assert result["settings"]["learning_rate"] == 0.01, f"{model}: the default learning rate is 0.01: {result}"
        assert result["curve"][0][0] == 0, f"{model}: the curve starts at step 0"


def test_report_plots_are_png(revision):
    plots = revision.report["plots"]
    assert plots == ["unlearning_report_metrics.png", "unlearning_report_curves.png"], f"plots written: {plots}"
    for name in plots:
        with Image.open(revision.output_dir / "report" / name) as image:
            assert image.format == "PNG", f"{name} is a {image.format} image"
            assert image.size[0] > 300, f"{name} is only {image.size} pixels"
        assert f"]({name})" in revision.markdown, f"the Markdown report should embed {name}"


def test_report_records_revision_cost(revision):
    timing = revision.report["timing"]
    cost = timing["revision_cost"]
    assert cost["passes"] == PASSES, f"the cost should cover {PASSES} passes: {cost}"
    assert 0 < timing["revision_seconds"] == cost["wall_seconds"], f"revision wall time: {timing}"
    assert cost["peak_rss_bytes"] > 0, f"the peak RSS should be measured: {cost}"
    assert cost["peak_cuda_bytes"] is None, f"a CPU run has no CUDA peak: {cost}"


def test_audit_manifest_hashes_forgotten_cases(revision):
    manifest = revision.manifest
    expected = sorted(hmac.new(SALT.encode(), i.encode(), hashlib.sha256).hexdigest() for i in revision.forget_ids)
    forget_set = manifest["forget_set"]
    assert forget_set["forget_case_hashes"] == expected, "the manifest must list HMAC-SHA256(salt, case ID), sorted"
    assert forget_set["forget_cases"] == len(revision.forget_ids), f"forget case count: {forget_set}"
    assert forget_set["forget_samples"] + forget_set["retain_samples"] == len(revision.trainer.data_loader.dataset)
    assert manifest["forget_rule"] == f"case_id in <{len(revision.forget_ids)} case IDs>", manifest["forget_rule"]


def test_audit_manifest_records_checkpoints_config_versions(revision):
    manifest = revision.manifest
    revision_state = revision.trainer.state.revision
    assert manifest["checkpoints"]["original_sha256"] == revision_state["original_sha256"], "original digest"
    assert manifest["checkpoints"]["revised_sha256"] == revision_state["revised_sha256"], "revised digest"
    assert manifest["method"]["preset"] == "psg_retain", f"the method's settings are missing: {manifest['method']}"
    assert manifest["passes"] == PASSES, f"expected {PASSES} passes, got {manifest['passes']}"
    assert set(manifest["versions"]) >= {"monai_unlearn", "monai", "torch", "pytorch-ignite", "python"}
    assert manifest["bundle_config"]["config"]["forget_rule"].startswith("CaseIdIn(['<id:"), (
        f"case IDs in the recorded config must be replaced by hashes: {manifest['bundle_config']['config']}"
    )
    assert revision.report["audit_manifest"] == "audit_manifest.json", "the report should name the manifest"


def test_outputs_and_logs_hide_case_ids(revision):
    written = [path for path in (revision.output_dir / "report").rglob("*") if path.is_file()]
    assert len(written) >= 5, f"expected report, manifest and plots, found {[p.name for p in written]}"
    for path in written:
        content = path.read_bytes()
        for case_id in revision.forget_ids:
            assert case_id.encode() not in content, f"{path.name} contains the forgotten case ID {case_id} in clear"
        assert SALT.encode() not in content, f"{path.name} contains the salt"
    for case_id in revision.forget_ids:
        assert case_id not in revision.log_text, f"the logs contain the forgotten case ID {case_id} in clear"
    assert SALT not in revision.log_text, "the logs contain the salt"
    assert "Membership inference on the revised model" in revision.log_text, "the handlers should log at INFO"


def test_report_alone_evaluates_oracle(modality_classifier, tmp_path):
    """UnlearningReport without UnlearningMetrics keeps its own before/after evaluation and adds the oracle."""
    rule = "label in {1}"
    network = copy.deepcopy(modality_classifier.network)
    oracle_path = tmp_path / "oracle.pt"
    torch.save(modality_classifier.network.state_dict(), oracle_path)
    loaders = {"test": evaluation_loader(modality_classifier.test, rule)}
    trainer = psg_trainer(network, modality_classifier.train, rule)
    UnlearningReport(tmp_path, loaders, forget_rule=rule, oracle_checkpoint=oracle_path).attach(trainer)
    trainer.run()
    report = json.loads((tmp_path / "unlearning_report.json").read_text())
    assert report["splits"]["test"]["oracle"] == report["splits"]["test"]["before"], (
        "an oracle with the original's weights must score as the original"
    )
    assert report["metrics"]["test_accuracy"]["oracle"] == report["metrics"]["test_accuracy"]["original"]
    assert report["mia"] == {}, "attacks need the MembershipInference handler"


def test_membership_inference_without_metrics_raises(modality_classifier):
    trainer = psg_trainer(copy.deepcopy(modality_classifier.network), modality_classifier.train)
    MembershipInference().attach(trainer)
    with pytest.raises(RuntimeError, match="attach monai_unlearn.handlers.UnlearningMetrics before it"):
        trainer.run()


def test_oracle_checkpoint_must_fit_network(modality_classifier, tmp_path):
    wrong = torch.nn.Linear(3, 3)
    torch.save(wrong.state_dict(), tmp_path / "oracle.pt")
    handler = UnlearningMetrics(
        {
            "train": evaluation_loader(modality_classifier.train, "label in {1}"),
            "test": evaluation_loader(modality_classifier.test, "label in {1}"),
        },
        oracle_checkpoint=tmp_path / "oracle.pt",
    )
    trainer = psg_trainer(copy.deepcopy(modality_classifier.network), modality_classifier.train)
    with pytest.raises(ValueError, match="does not fit the bundle's network"):
        handler.evaluate_before(trainer)


def test_audit_manifest_needs_salt(modality_classifier, tmp_path):
    with pytest.raises(ValueError, match="No salt given"):
        AuditManifest(tmp_path, "label in {1}", modality_classifier.train)
    with pytest.raises(ValueError, match="has 5 bytes; use at least 16"):
        AuditManifest(tmp_path, "label in {1}", modality_classifier.train, salt="short")


def test_handlers_leave_revision_unchanged(modality_classifier, tmp_path):
    """Per-pass evaluation, attacks, the oracle and relearn times must not change the revised weights."""
    rule = "label in {1}"
    oracle_path = tmp_path / "oracle.pt"
    torch.save(modality_classifier.network.state_dict(), oracle_path)
    results = []
    for with_handlers in (False, True):
        network = copy.deepcopy(modality_classifier.network)
        # The training loader shuffles with torch's global generator, so any draw by a handler would change the order.
        entries = [dict(e) for e in modality_classifier.train]
        loader = DataLoader(Dataset(entries, transform=TagForgetd(rule)), batch_size=32, shuffle=True)
        trainer = UnlearningTrainer(
            device="cpu",
            max_epochs=2,
            train_data_loader=loader,
            network=network,
            optimizer=torch.optim.Adam(network.parameters(), lr=1e-3),
            method="psg",
            method_kwargs={"epsilon": 0.1, "box": (0.0, 1.0)},
        )
        loaders = {
            "train": evaluation_loader(modality_classifier.train, rule),
            "test": evaluation_loader(modality_classifier.test, rule),
        }
        if with_handlers:
            UnlearningMetrics(loaders, oracle_checkpoint=oracle_path, relearn={"max_steps": 3}).attach(trainer)
            MembershipInference(every_pass=True).attach(trainer)
        UnlearningReport(tmp_path / f"report_{with_handlers}", loaders).attach(trainer)
        torch.manual_seed(0)
        trainer.run()
        results.append(network.state_dict())
    for key, value in results[0].items():
        assert torch.equal(value, results[1][key]), f"the evaluation handlers changed the revised weights at {key}"


def test_cost_counts_setup_only_revision(modality_classifier, tmp_path):
    """SSD edits the weights in its setup and ends the run at the first pass's start; its cost is still counted."""
    network = copy.deepcopy(modality_classifier.network)
    trainer = UnlearningTrainer(
        device="cpu",
        max_epochs=2,
        train_data_loader=evaluation_loader(modality_classifier.train, "label in {1}"),
        network=network,
        optimizer=torch.optim.Adam(network.parameters(), lr=1e-3),
        method="ssd",
        method_kwargs={"alpha": 1.5},
    )
    UnlearningReport(tmp_path, {"test": evaluation_loader(modality_classifier.test, "label in {1}")}).attach(trainer)
    trainer.run()
    timing = json.loads((tmp_path / "unlearning_report.json").read_text())["timing"]
    assert timing["revision_seconds"] > 0, f"the setup of SSD is the revision and must be timed: {timing}"
    assert timing["revision_cost"]["passes"] == 1, f"the pass that SSD ended at its start counts once: {timing}"


def test_pass_evaluation_sees_method_predictions(modality_classifier):
    """Boundary Expanding carries a shadow class until the run completes; per-pass evaluations must not see it."""
    network = copy.deepcopy(modality_classifier.network)
    rule = "label in {1}"
    trainer = UnlearningTrainer(
        device="cpu",
        max_epochs=2,
        train_data_loader=evaluation_loader(modality_classifier.train, rule),
        network=network,
        optimizer=torch.optim.Adam(network.parameters(), lr=1e-3),
        method="boundary_expanding",
    )
    loaders = {
        "train": evaluation_loader(modality_classifier.train, rule),
        "test": evaluation_loader(modality_classifier.test, rule),
    }
    metrics = UnlearningMetrics(loaders, class_names=CLASS_NAMES)
    metrics.attach(trainer)
    trainer.run()
    passes = [number for number, _ in metrics.record.curves]
    assert passes == [0, 1, 2], f"expected evaluations of the original and both passes, got {passes}"
    after_pass_one = metrics.record.curves[1][1].summaries()["test"]
    assert set(after_pass_one["per_class_accuracy"]) <= set(CLASS_NAMES), f"a shadow class leaked: {after_pass_one}"
