# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Handler that evaluates the network before and after a revision and writes the unlearning report.

It observes the unlearning trainer and never changes the training. At ``Events.STARTED`` it evaluates the network on
each evaluation loader and starts the revision clock. At ``Events.COMPLETED`` it stops the clock, evaluates again and
writes ``<report_name>.json`` (for machines) and ``<report_name>.md`` (for people).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import platform
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.engines.utils import default_prepare_batch

from monai_unlearn.metrics import evaluate_classifier
from monai_unlearn.transforms import ForgetRule, as_rule
from monai_unlearn.utils import atomic_write_json, atomic_write_text

__all__ = ["UnlearningReport", "format_report_markdown"]

_SUMMARY_METRICS = (
    ("accuracy", "accuracy (all samples)"),
    ("forget_accuracy", "accuracy on forget samples"),
    ("retain_accuracy", "accuracy on retain samples"),
    ("mean_loss", "mean loss (all samples)"),
    ("forget_mean_loss", "mean loss on forget samples"),
    ("retain_mean_loss", "mean loss on retain samples"),
)


def _package_versions() -> dict[str, str]:
    import ignite
    import monai

    import monai_unlearn

    return {
        "monai_unlearn": monai_unlearn.__version__,
        "monai": monai.__version__,
        "torch": torch.__version__,
        "pytorch-ignite": ignite.__version__,
        "python": platform.python_version(),
    }


class UnlearningReport:
    """Evaluate before and after the revision and write a JSON and a Markdown report.

    Each evaluation loader should tag its samples with the same forget rule as the training data (for example with
    :class:`~monai_unlearn.transforms.TagForgetd` in its transforms), so the report can separate forget and retain
    samples. A typical set: ``{"test": ..., "forget_train": ...}``.

    Attach it after the handler that loads the trained weights (``CheckpointLoader``) and after
    :class:`~monai_unlearn.handlers.RevisionSaver`, so that the "before" evaluation sees the trained weights and the
    report includes the checkpoint digests.

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
        self.logger = logging.getLogger(name)
        self.before: dict[str, dict[str, Any]] = {}
        self.after: dict[str, dict[str, Any]] = {}
        self.report: dict[str, Any] = {}
        self._clock_start: float | None = None
        self.revision_seconds: float | None = None

    def attach(self, engine: Engine) -> None:
        """Register the "before" evaluation at STARTED and the "after" evaluation and report at COMPLETED."""
        engine.add_event_handler(Events.STARTED, self.evaluate_before)
        engine.add_event_handler(Events.COMPLETED, self.evaluate_after)

    def _network(self, engine: Engine) -> torch.nn.Module:
        return self.network if self.network is not None else engine.network  # type: ignore[attr-defined]

    def _evaluate(self, engine: Engine) -> dict[str, dict[str, Any]]:
        device = getattr(engine.state, "device", None) or "cpu"
        results = {}
        for split, loader in self.loaders.items():
            evaluation = self.evaluate_fn(
                self._network(engine), loader, device, self.forget_key, self.class_names, self.prepare_batch
            )
            results[split] = evaluation.summary
        return results

    def evaluate_before(self, engine: Engine) -> None:
        """Evaluate the trained network, then start the revision clock."""
        self.before = self._evaluate(engine)
        for split, summary in self.before.items():
            self.logger.info("Before revision, %s: %s", split, _short(summary))
        self._clock_start = time.perf_counter()

    def evaluate_after(self, engine: Engine) -> None:
        """Stop the revision clock, evaluate the revised network and write the report."""
        if self._clock_start is None:
            raise RuntimeError("UnlearningReport saw COMPLETED without STARTED; attach it to the trainer before run().")
        self.revision_seconds = time.perf_counter() - self._clock_start
        self.after = self._evaluate(engine)
        for split, summary in self.after.items():
            self.logger.info("After revision, %s: %s", split, _short(summary))
        self.report = self._build(engine)
        self.write()

    def _training_time(self) -> dict[str, Any] | None:
        if self.training_record is None:
            return None
        if not self.training_record.is_file():
            self.logger.warning("Training time record %s not found; the report omits the comparison.", self.training_record)
            return None
        return json.loads(self.training_record.read_text(encoding="utf-8"))

    def _build(self, engine: Engine) -> dict[str, Any]:
        method = getattr(engine, "method", None)
        history = list(getattr(engine, "history", []))
        flip_rates = [h["flip_rate"] for h in history if "flip_rate" in h]
        timing: dict[str, Any] = {"revision_seconds": self.revision_seconds}
        training = self._training_time()
        if training is not None:
            timing["original_training_seconds"] = training.get("wall_time_seconds")
            timing["original_training_epochs"] = training.get("epochs")
            if training.get("wall_time_seconds") and self.revision_seconds:
                timing["speedup"] = training["wall_time_seconds"] / self.revision_seconds
        return {
            "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "method": method.config() if method is not None else None,
            "forget_rule": self.forget_rule,
            "passes": history,
            "flip_rate": flip_rates[-1] if flip_rates else None,
            "splits": {split: {"before": self.before[split], "after": self.after[split]} for split in self.loaders},
            "timing": timing,
            "checkpoints": getattr(engine.state, "revision", None),
            "device": str(getattr(engine.state, "device", "")),
            "versions": _package_versions(),
        }

    def write(self) -> tuple[Path, Path]:
        """Write the JSON and Markdown reports and return their paths."""
        json_path = atomic_write_json(self.output_dir / f"{self.report_name}.json", self.report)
        markdown_path = atomic_write_text(self.output_dir / f"{self.report_name}.md", format_report_markdown(self.report))
        self.logger.info("Wrote the unlearning report to %s and %s.", json_path, markdown_path)
        return json_path, markdown_path


def _short(summary: dict[str, Any]) -> str:
    parts = []
    for key in ("accuracy", "forget_accuracy", "retain_accuracy"):
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


def format_report_markdown(report: dict[str, Any]) -> str:
    """Render a report dictionary (as written to JSON) as a Markdown summary."""
    lines = ["# Unlearning report", ""]
    method = report.get("method") or {}
    if method:
        settings = ", ".join(f"{k}={v}" for k, v in method.items() if k not in ("name",) and v is not None)
        lines.append(f"- Method: `{method.get('preset', method.get('name'))}` ({settings})")
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
        lines.append(text)
    if report.get("device"):
        lines.append(f"- Device: {report['device']}")
    checkpoints = report.get("checkpoints") or {}
    if checkpoints.get("original_backup"):
        lines.append(f"- Original checkpoint kept as `{Path(checkpoints['original_backup']).name}`")
    lines.append("")
    for split, values in (report.get("splits") or {}).items():
        before, after = values["before"], values["after"]
        lines += [f"## {split}", "", "| metric | before | after | change |", "| --- | --- | --- | --- |"]
        for key, label in _SUMMARY_METRICS:
            if before.get(key) is None and after.get(key) is None:
                continue
            lines.append(f"| {label} | {_cell(before.get(key))} | {_cell(after.get(key))} | {_change(before.get(key), after.get(key))} |")
        for class_name, value in (before.get("per_class_accuracy") or {}).items():
            after_value = (after.get("per_class_accuracy") or {}).get(class_name)
            lines.append(f"| accuracy, class {class_name} | {_cell(value)} | {_cell(after_value)} | {_change(value, after_value)} |")
        lines.append(
            f"\n{before.get('samples')} samples: {before.get('forget_samples')} forget, "
            f"{before.get('retain_samples')} retain.\n"
        )
    passes = report.get("passes") or []
    if passes:
        keys = [k for k in ("forget_samples", "retain_samples", "flip_rate", "forget_loss", "retain_loss") if k in passes[0]]
        lines += ["## Passes", "", "| pass | " + " | ".join(keys) + " |", "| --- |" + " --- |" * len(keys)]
        for entry in passes:
            lines.append(f"| {int(entry['pass'])} | " + " | ".join(_cell(entry.get(k)) for k in keys) + " |")
        lines.append("")
    return "\n".join(lines)
