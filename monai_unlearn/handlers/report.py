# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Handler that evaluates the network before and after a revision and writes the unlearning report.

It observes the unlearning trainer and never changes the training. At ``Events.STARTED`` it takes the evaluation of the
trained network (and of the retrain oracle, when one is given), and at ``Events.COMPLETED`` the evaluation of the
revised network. Then it writes ``<report_name>.json`` (for machines), ``<report_name>.md`` (for people) and PNG plots.
The evaluations come from the :class:`~monai_unlearn.handlers.UnlearningMetrics` handler attached before it (with its
per-pass curves and, through :class:`~monai_unlearn.handlers.MembershipInference`, the attacks), or, when there is
none, from a private instance that evaluates before and after only. The report always sets the original's and the
oracle's values beside the revised model's.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.engines.utils import default_prepare_batch

from monai_unlearn.metrics import evaluate_classifier
from monai_unlearn.transforms import ForgetRule, as_rule
from monai_unlearn.utils import atomic_write_json, atomic_write_text

from .audit_manifest import REDACTOR_ATTRIBUTE, package_versions
from .evaluation_record import EvaluationRecord, get_evaluation_record
from .report_plots import plot_metric_bars, plot_pass_curves
from .revision_cost import RevisionCostRecorder
from .unlearning_metrics import UnlearningMetrics

__all__ = ["UnlearningReport", "format_report_markdown"]

_SUMMARY_METRICS = (
    ("accuracy", "accuracy (all samples)"),
    ("forget_accuracy", "accuracy on forget samples"),
    ("retain_accuracy", "accuracy on retain samples"),
    ("mean_loss", "mean loss (all samples)"),
    ("forget_mean_loss", "mean loss on forget samples"),
    ("retain_mean_loss", "mean loss on retain samples"),
)

#: Result fields of an attack shown in the Markdown report, with their labels.
_ATTACK_MEASURES = (("auc", "AUC"), ("balanced_accuracy", "balanced accuracy"), ("mia_efficacy", "MIA-efficacy"))

#: Membership inference values drawn in the bar plot beside the headline metrics.
_PLOTTED_ATTACK_METRICS = ("mia_loss_threshold_auc", "mia_loss_logistic_auc", "mia_efficacy", "mia_entropy_efficacy")


def _package_versions() -> dict[str, str]:
    return package_versions()


class UnlearningReport:
    """Evaluate before and after the revision and write a JSON report, a Markdown report and PNG plots.

    Each evaluation loader should tag its samples with the same forget rule as the training data (for example with
    :class:`~monai_unlearn.transforms.TagForgetd` in its transforms), so the report can separate forget and retain
    samples. A typical set is ``{"test": ..., "train": ...}``. When a training split and a held-out split are named
    ``train_split`` and ``heldout_split``, the report also gives the headline metrics, the gap to the oracle and the
    curves.

    Attach it after the handler that loads the trained weights (``CheckpointLoader``), after
    :class:`~monai_unlearn.handlers.RevisionSaver` (for the checkpoint digests), and after
    :class:`~monai_unlearn.handlers.UnlearningMetrics`, :class:`~monai_unlearn.handlers.MembershipInference` and
    :class:`~monai_unlearn.handlers.AuditManifest` when they are used: it reuses their results when
    ``UnlearningMetrics`` evaluates the same loader objects under the same split names.

    Args:
        output_dir: folder of the report files; created if needed.
        loaders: evaluation loaders by split name.
        forget_key: batch key of the forget flag.
        class_names: names of the classes, in index order, for the per-class table.
        forget_rule: the forget rule (or its expression), recorded in the report.
        training_record: JSON file written by :class:`~monai_unlearn.handlers.TrainingTimeRecorder` for the
            original training; when given, the report compares the revision's wall time with it.
        network: network to evaluate; None uses ``engine.network``.
        prepare_batch: function that extracts image and label from a batch, as in MONAI engines.
        evaluate_fn: the task's evaluation, called as ``evaluate_fn(network, loader, device, forget_key, class_names,
            prepare_batch)``; it returns an object whose ``summary`` dict holds the split's metrics.
            :func:`~monai_unlearn.metrics.evaluate_classifier` by default.
        report_name: stem of the report files.
        name: name of the handler's logger.
        oracle_checkpoint: weights of the retrain oracle (same network definition), evaluated on the same loaders
            when no ``UnlearningMetrics`` handler does it; None for no oracle.
        plots: write the PNG plots (``<report_name>_metrics.png`` and ``<report_name>_curves.png``).
        metric: the metric's name in the summaries (``"accuracy"``, ``"dice"``).
        train_split: name of the training split among ``loaders``.
        heldout_split: name of the held-out split among ``loaders``.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        loaders: Mapping[str, Iterable],
        forget_key: str = "forget",
        class_names: list[str] | None = None,
        forget_rule: ForgetRule | str | None = None,
        training_record: str | os.PathLike | None = None,
        network: torch.nn.Module | None = None,
        prepare_batch: Callable = default_prepare_batch,
        evaluate_fn: Callable = evaluate_classifier,
        report_name: str = "unlearning_report",
        name: str = "UnlearningReport",
        oracle_checkpoint: str | os.PathLike | None = None,
        plots: bool = True,
        metric: str = "accuracy",
        train_split: str = "train",
        heldout_split: str = "test",
    ) -> None:
        if not loaders:
            raise ValueError("UnlearningReport needs at least one evaluation loader, got none.")
        self.output_dir = Path(output_dir)
        self.loaders = dict(loaders)
        self.forget_key = forget_key
        self.class_names = list(class_names) if class_names is not None else None
        self.forget_rule = None if forget_rule is None else as_rule(forget_rule).describe()
        self.training_record = Path(training_record) if training_record is not None else None
        self.network = network
        self.prepare_batch = prepare_batch
        self.evaluate_fn = evaluate_fn
        self.report_name = report_name
        self.oracle_checkpoint = oracle_checkpoint
        self.plots = bool(plots)
        self.metric = metric
        self.train_split = train_split
        self.heldout_split = heldout_split
        self.logger = logging.getLogger(name)
        self.before: dict[str, dict[str, Any]] = {}
        self.after: dict[str, dict[str, Any]] = {}
        self.report: dict[str, Any] = {}
        self.cost_recorder = RevisionCostRecorder(name=f"{name}.cost")
        self.revision_seconds: float | None = None
        self._started = False
        self._own_metrics: UnlearningMetrics | None = None
        self._record: EvaluationRecord | None = None

    def attach(self, engine: Engine) -> None:
        """Register the "before" evaluation at STARTED, the cost measurement of the passes, and the "after"
        evaluation and report at COMPLETED."""
        engine.add_event_handler(Events.STARTED, self.evaluate_before)
        self.cost_recorder.attach(engine)
        engine.add_event_handler(Events.COMPLETED, self.evaluate_after)

    def _summaries(self, evaluation: Any) -> dict[str, dict[str, Any]]:
        summaries = evaluation.summaries()
        return {split: summaries[split] for split in self.loaders if split in summaries}

    def evaluate_before(self, engine: Engine) -> None:
        """Take (or compute) the evaluation of the trained network and of the oracle."""
        record = get_evaluation_record(engine)
        if record is not None and record.covers(self.loaders) and record.original is not None:
            self._own_metrics = None
            self._record = record
            if self.oracle_checkpoint is not None and record.oracle is None:
                self.logger.warning(
                    "The report reuses the evaluations of UnlearningMetrics, which has no oracle; give "
                    "oracle_checkpoint=%s to UnlearningMetrics instead.",
                    self.oracle_checkpoint,
                )
        else:
            self._own_metrics = UnlearningMetrics(
                self.loaders,
                train_split=self.train_split,
                heldout_split=self.heldout_split,
                forget_key=self.forget_key,
                class_names=self.class_names,
                evaluate_fn=self.evaluate_fn,
                prepare_batch=self.prepare_batch,
                metric=self.metric,
                every_pass=False,
                oracle_checkpoint=self.oracle_checkpoint,
                network=self.network,
                publish=False,
                require_splits=False,
                name=self.logger.name,
            )
            self._own_metrics.evaluate_before(engine)
            self._record = self._own_metrics.record
        assert self._record.original is not None
        self.before = self._summaries(self._record.original)
        for split, summary in self.before.items():
            self.logger.info("Before revision, %s: %s", split, _short(summary))
        self._started = True

    def evaluate_after(self, engine: Engine) -> None:
        """Take (or compute) the evaluation of the revised network and write the report."""
        if not self._started or self._record is None:
            raise RuntimeError("UnlearningReport saw COMPLETED without STARTED; attach it to the trainer before run().")
        self.revision_seconds = self.cost_recorder.seconds
        if self._own_metrics is not None:
            self._own_metrics.evaluate_after(engine)
        if self._record.revised is None:
            raise RuntimeError(
                "The evaluation record has no revised model at COMPLETED; attach UnlearningMetrics before "
                "UnlearningReport in the handler list."
            )
        self.after = self._summaries(self._record.revised)
        for split, summary in self.after.items():
            self.logger.info("After revision, %s: %s", split, _short(summary))
        self.report = self._build(engine)
        self.write()

    def _training_time(self, path: Path | None) -> dict[str, Any] | None:
        if path is None:
            return None
        if not path.is_file():
            self.logger.warning("Training time record %s not found; the report omits the comparison.", path)
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def _timing(self, engine: Engine, record: EvaluationRecord) -> dict[str, Any]:
        timing: dict[str, Any] = {"revision_seconds": self.revision_seconds}
        cost = self.cost_recorder.cost
        if cost is not None:
            timing["revision_cost"] = {**cost.to_dict(), "passes": self.cost_recorder.passes}
            timing["revision_peak_memory_bytes"] = cost.peak_memory_bytes
        training = self._training_time(self.training_record)
        if training is not None:
            timing["original_training_seconds"] = training.get("wall_time_seconds")
            timing["original_training_epochs"] = training.get("epochs")
            if training.get("peak_memory_bytes") is not None:
                timing["original_training_peak_memory_bytes"] = training.get("peak_memory_bytes")
            if training.get("wall_time_seconds") and self.revision_seconds:
                timing["speedup"] = training["wall_time_seconds"] / self.revision_seconds
        oracle_training = (record.oracle_info or {}).get("training")
        if oracle_training:
            timing["oracle_training_seconds"] = oracle_training.get("wall_time_seconds")
            if oracle_training.get("peak_memory_bytes") is not None:
                timing["oracle_training_peak_memory_bytes"] = oracle_training.get("peak_memory_bytes")
            if oracle_training.get("wall_time_seconds") and self.revision_seconds:
                timing["speedup_vs_oracle"] = oracle_training["wall_time_seconds"] / self.revision_seconds
        return timing

    def _build(self, engine: Engine) -> dict[str, Any]:
        record = self._record
        assert record is not None, "evaluate_before sets the record"
        assert record.revised is not None, "evaluate_after checks the revised evaluation first"
        method = getattr(engine, "method", None)
        history = list(getattr(engine, "history", []))
        flip_rates = [h["flip_rate"] for h in history if "flip_rate" in h]

        oracle = self._summaries(record.oracle) if record.oracle is not None else {}
        splits = {}
        for split in self.loaders:
            splits[split] = {"before": self.before.get(split, {}), "after": self.after.get(split, {})}
            if split in oracle:
                splits[split]["oracle"] = oracle[split]

        models = record.models()
        comparison = record.suite.compare(models, reference="oracle")
        audit = getattr(engine.state, "unlearning_audit", None)
        report = {
            "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "method": method.config() if method is not None else None,
            "forget_rule": self.forget_rule,
            "passes": history,
            "flip_rate": flip_rates[-1] if flip_rates else None,
            "splits": splits,
            "metric": record.suite.metric,
            "models": list(models),
            "metrics": comparison["metrics"],
            "gap": comparison["gap"],
            "gap_metrics": record.suite.gap_metrics,
            "per_class": comparison["per_class"],
            "mia": {
                model: {attack: result.to_dict() for attack, result in evaluation.mia.items()}
                for model, evaluation in models.items()
                if evaluation.mia
            },
            "curves": record.curve_rows(),
            "relearn": dict(record.relearn),
            "oracle": record.oracle_info,
            "timing": self._timing(engine, record),
            "checkpoints": getattr(engine.state, "revision", None),
            "audit_manifest": Path(audit["path"]).name if audit else None,
            "plots": [],
            "device": str(getattr(engine.state, "device", "")),
            "versions": _package_versions(),
        }

        # The AuditManifest handler publishes a redactor that hides case IDs, for example in a rule's description.
        redactor = getattr(engine.state, REDACTOR_ATTRIBUTE, None)
        return redactor.redact(report) if redactor is not None else report

    def _write_plots(self) -> list[str]:
        written = []
        metrics = self.report.get("metrics") or {}
        headline = [key for key in metrics if not key.startswith("mia_")]
        plotted = {key: metrics[key] for key in [*headline, *_PLOTTED_ATTACK_METRICS] if key in metrics}
        bars = plot_metric_bars(plotted, self.output_dir / f"{self.report_name}_metrics.png")
        if bars is not None:
            written.append(bars.name)
        oracle = None
        if "oracle" in self.report["models"]:
            oracle = {key: values.get("oracle") for key, values in metrics.items()}
        curves = plot_pass_curves(
            self.report.get("curves") or [], self.output_dir / f"{self.report_name}_curves.png", self.metric, oracle
        )
        if curves is not None:
            written.append(curves.name)
        return written

    def write(self) -> tuple[Path, Path]:
        """Write the plots, the JSON and the Markdown reports, and return the paths of the two reports."""
        if self.plots and self.report.get("models"):
            self.report["plots"] = self._write_plots()
        json_path = atomic_write_json(self.output_dir / f"{self.report_name}.json", self.report)
        markdown = format_report_markdown(self.report)
        markdown_path = atomic_write_text(self.output_dir / f"{self.report_name}.md", markdown)
        self.logger.info("Wrote the unlearning report to %s and %s.", json_path, markdown_path)
        return json_path, markdown_path


def _short(summary: dict[str, Any]) -> str:
    parts = []
    for key in ("accuracy", "forget_accuracy", "retain_accuracy", "mean_dice", "forget_mean_dice", "retain_mean_dice"):
        value = summary.get(key)
        if value is not None:
            parts.append(f"{key} {value:.4f}")
    return ", ".join(parts)


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _change(before: Any, after: Any) -> str:
    if isinstance(before, (int, float)) and isinstance(after, (int, float)):
        return f"{after - before:+.4f}"
    return ""


def _megabytes(value: Any) -> str:
    return f"{value / 2**20:.0f} MiB" if isinstance(value, (int, float)) else "n/a"


def _summary_lines(report: dict[str, Any]) -> list[str]:
    metrics = report.get("metrics") or {}
    if not metrics:
        return []
    models = list(report.get("models") or [])
    gap = report.get("gap") or {}
    gapped = [model for model in models if model in gap]
    header = "| metric | " + " | ".join(models) + "".join(f" | gap of {model} to oracle" for model in gapped) + " |"
    lines = ["## Summary", "", header, "| --- |" + " --- |" * (len(models) + len(gapped))]
    for key, values in metrics.items():
        cells = [_cell(values.get(model)) for model in models]
        cells += [_cell((gap[model]["per_metric"]).get(key)) for model in gapped]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines.append("")
    for model in gapped:
        used = ", ".join(gap[model]["metrics"])
        lines.append(f"- Mean gap of the {model} model to the oracle: {_cell(gap[model]['mean'])} (over {used})")
    if gapped:
        lines.append("")
    return lines


def _attack_lines(report: dict[str, Any]) -> list[str]:
    attacks = report.get("mia") or {}
    if not attacks:
        return []
    models = [model for model in (report.get("models") or []) if model in attacks]
    names: list[str] = []
    for results in attacks.values():
        names.extend(name for name in results if name not in names)
    lines = [
        "## Membership inference",
        "",
        "Members are the forget set's training samples. The loss attacks and the AUC columns compare them with",
        "held-out samples of the same class or group. MIA-efficacy is the share of forget samples that the SVC attack,",
        "trained on retain (member) against test (non-member) samples, classifies as non-members. The target is the",
        "oracle's value.",
        "",
        "| attack | measure | " + " | ".join(models) + " |",
        "| --- | --- |" + " --- |" * len(models),
    ]
    for name in names:
        for measure, label in _ATTACK_MEASURES:
            values = [attacks[model].get(name, {}).get(measure) for model in models]
            if all(value is None for value in values):
                continue
            lines.append(f"| {name} | {label} | " + " | ".join(_cell(value) for value in values) + " |")
    lines.append("")
    first = attacks[models[0]] if models else {}
    for name, result in first.items():
        if result.get("skipped"):
            lines.append(f"- {name}: skipped ({result['skipped']})")
        else:
            details = result.get("details") or {}
            spread = details.get("auc_std_under_null")
            text = f"- {name}: {result.get('members')} members, {result.get('non_members')} non-members"
            if details.get("non_member_set"):
                text += f" ({details['non_member_set']})"
            if spread is not None:
                text += f"; the AUC of a chance attack has a standard deviation of {spread:.3f} at these sizes"
            lines.append(text)
    lines.append("")
    return lines


def _relearn_lines(report: dict[str, Any]) -> list[str]:
    relearn = report.get("relearn") or {}
    if not relearn:
        return []
    lines = ["## Relearn time", ""]
    for model, result in relearn.items():
        settings = result.get("settings") or {}
        steps = result.get("steps")
        outcome = f"{steps} steps" if steps is not None else f"not within {result.get('max_steps')} steps"
        lines.append(
            f"- {model}: {outcome} to bring the forget accuracy from {_cell(result.get('start_value'))} back to "
            f"{_cell(result.get('target'))} ({settings.get('optimizer')}, "
            f"learning rate {settings.get('learning_rate')}, batch size {settings.get('batch_size')})"
        )
    lines.append("")
    return lines


def _curve_lines(report: dict[str, Any]) -> list[str]:
    rows = report.get("curves") or []
    if len(rows) < 2:
        return []
    metric = report.get("metric") or "accuracy"
    keys = [f"{prefix}_{metric}" for prefix in ("forget_train", "forget_heldout", "retain", "test_retain")]
    keys = [key for key in keys if any(row.get(key) is not None for row in rows)]
    keys += [key for key in ("mia_loss_threshold_auc", "mia_efficacy") if any(row.get(key) is not None for row in rows)]
    lines = ["## Curves over passes", "", "| pass | " + " | ".join(keys) + " |", "| --- |" + " --- |" * len(keys)]
    for row in rows:
        lines.append(f"| {row['pass']} | " + " | ".join(_cell(row.get(key)) for key in keys) + " |")
    lines.append("")
    return lines


def format_report_markdown(report: dict[str, Any]) -> str:
    """Render a report dictionary (as written to JSON) as a Markdown summary."""
    lines = ["# Unlearning report", ""]
    method = report.get("method") or {}
    if method:
        settings = ", ".join(f"{k}={v}" for k, v in method.items() if k not in ("name",) and v is not None)
        lines.append(f"- Method: `{method.get('preset', method.get('name'))}`" + (f" ({settings})" if settings else ""))
    if report.get("forget_rule"):
        lines.append(f"- Forget rule: `{report['forget_rule']}`")
    if report.get("flip_rate") is not None:
        lines.append(f"- Boundary-label flip rate (last pass): {report['flip_rate']:.4f}")
    timing = report.get("timing") or {}
    if timing.get("revision_seconds") is not None:
        text = f"- Revision wall time: {timing['revision_seconds']:.1f} s"
        if timing.get("original_training_seconds") is not None:
            text += f"; original training: {timing['original_training_seconds']:.1f} s"
        if timing.get("speedup") is not None:
            text += f" (revision {timing['speedup']:.1f} times faster)"
        if timing.get("oracle_training_seconds") is not None:
            text += f"; retraining the oracle: {timing['oracle_training_seconds']:.1f} s"
        lines.append(text)
    if timing.get("revision_peak_memory_bytes") is not None:
        cost = timing.get("revision_cost") or {}
        kind = "CUDA tensor memory" if cost.get("peak_cuda_bytes") is not None else "process RSS"
        text = f"- Revision peak memory ({kind}): {_megabytes(timing['revision_peak_memory_bytes'])}"
        if timing.get("original_training_peak_memory_bytes") is not None:
            text += f"; original training: {_megabytes(timing['original_training_peak_memory_bytes'])}"
        lines.append(text)
    if report.get("device"):
        lines.append(f"- Device: {report['device']}")
    checkpoints = report.get("checkpoints") or {}
    if checkpoints.get("original_backup"):
        lines.append(f"- Original checkpoint kept as `{Path(checkpoints['original_backup']).name}`")
    oracle = report.get("oracle") or {}
    if oracle.get("checkpoint"):
        lines.append(f"- Retrain oracle: `{oracle['checkpoint']}` (sha256 {str(oracle.get('sha256', ''))[:12]})")
    if report.get("audit_manifest"):
        lines.append(f"- Audit manifest: `{report['audit_manifest']}`")
    lines.append("")
    lines += _summary_lines(report)
    for plot in report.get("plots") or []:
        lines += [f"![{Path(plot).stem}]({plot})", ""]
    lines += _attack_lines(report)
    lines += _relearn_lines(report)
    for split, values in (report.get("splits") or {}).items():
        before, after, oracle_values = values["before"], values["after"], values.get("oracle")
        header = "| metric | before | after | change |" + (" oracle |" if oracle_values is not None else "")
        separator = "| --- | --- | --- | --- |" + (" --- |" if oracle_values is not None else "")
        lines += [f"## {split}", "", header, separator]
        for key, label in _SUMMARY_METRICS:
            if before.get(key) is None and after.get(key) is None:
                continue
            change = _change(before.get(key), after.get(key))
            row = f"| {label} | {_cell(before.get(key))} | {_cell(after.get(key))} | {change} |"
            if oracle_values is not None:
                row += f" {_cell(oracle_values.get(key))} |"
            lines.append(row)
        for class_name, value in (before.get("per_class_accuracy") or {}).items():
            after_value = (after.get("per_class_accuracy") or {}).get(class_name)
            change = _change(value, after_value)
            row = f"| accuracy, class {class_name} | {_cell(value)} | {_cell(after_value)} | {change} |"
            if oracle_values is not None:
                row += f" {_cell((oracle_values.get('per_class_accuracy') or {}).get(class_name))} |"
            lines.append(row)
        lines.append(
            f"\n{before.get('samples')} samples: {before.get('forget_samples')} forget, "
            f"{before.get('retain_samples')} retain.\n"
        )
    lines += _curve_lines(report)
    passes = report.get("passes") or []
    if passes:
        keys = [k for k in ("forget_samples", "retain_samples", "flip_rate", "forget_loss", "retain_loss") if k in passes[0]]
        lines += ["## Passes", "", "| pass | " + " | ".join(keys) + " |", "| --- |" + " --- |" * len(keys)]
        for entry in passes:
            lines.append(f"| {int(entry['pass'])} | " + " | ".join(_cell(entry.get(k)) for k in keys) + " |")
        lines.append("")
    return "\n".join(lines)
