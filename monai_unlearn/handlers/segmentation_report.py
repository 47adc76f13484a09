# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Handler that writes the unlearning report of a segmentation bundle, with the retrain oracle beside it.

It extends :class:`~monai_unlearn.handlers.UnlearningReport` and, like it, only observes the trainer. At
``Events.STARTED`` it evaluates the retrain oracle (when its checkpoint is given) and the original network; at
``Events.COMPLETED`` the revised network. The report compares the three models on per-label Dice of forget, retain
and held-out cases and on the gap between forget-case and held-out-case Dice. It adds the case-level membership
inference attack on case-mean voxel losses and the voxels still predicted as each retired label. Its timing compares
the revision's wall time and CPU time with those of the original training and of the oracle's training.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine
from monai.engines.utils import default_prepare_batch

from monai_unlearn.metrics import SegmenterEvaluation, case_loss_mia, evaluate_segmenter
from monai_unlearn.transforms import ForgetRule
from monai_unlearn.utils import atomic_write_json, atomic_write_text, sha256_file

from .report import UnlearningReport, _cell, _change

__all__ = ["SegmentationUnlearningReport", "format_segmentation_markdown"]

MODELS = ("original", "revised", "oracle")


class SegmentationUnlearningReport(UnlearningReport):
    """Evaluate a segmentation network before and after a revision, and a retrain oracle, and write the report.

    The member split (normally the training data, tagged with the forget rule) gives the forget and retain cases,
    and the held-out split gives the non-members. When at least ``min_group_cases`` held-out cases match the forget
    rule (flag 1), they form the held-out comparison group, so that large-volume outliers are compared with held-out
    large-volume cases. Otherwise every held-out case is used. The report records which group it used.

    Args:
        output_dir: folder of the report files; created if needed.
        loaders: evaluation loaders of whole cases by split name; must contain ``member_split`` and
            ``held_out_split``.
        forget_key: batch key of the forget flag.
        class_names: names of the classes, background first.
        forget_rule: the forget rule (or its expression), recorded in the report; None for label forgetting.
        retired_labels: label values being retired (label forgetting); the report lists their Dice and the voxels
            still predicted as each of them.
        training_record: the original training's time record (:class:`~monai_unlearn.handlers.TrainingTimeRecorder`).
        oracle_checkpoint: weights of the retrain oracle (the bundle trained on the retain cases only), loaded into a
            copy of the network; None leaves the oracle columns out.
        oracle_training_record: the oracle's time record; None looks for ``training_time.json`` beside the oracle
            checkpoint.
        network: network to evaluate; None uses ``engine.network``.
        prepare_batch: extracts image and label from a batch, as in MONAI engines.
        inferer: runs the network on whole cases, for example ``SliceInferer`` for a 2D network; None runs it once on
            each whole image.
        member_split: the split whose flagged cases are the forget set.
        held_out_split: the split of cases never used for training.
        min_group_cases: smallest number of flagged held-out cases that forms the held-out comparison group.
        report_name: stem of the report files.
        name: name of the handler's logger.

    Raises:
        ValueError: when ``loaders`` lacks the member or held-out split, or ``min_group_cases`` is below 1.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        loaders: Mapping[str, Iterable],
        forget_key: str = "forget",
        class_names: list[str] | None = None,
        forget_rule: ForgetRule | str | None = None,
        retired_labels: Sequence[int] | None = None,
        training_record: str | os.PathLike | None = None,
        oracle_checkpoint: str | os.PathLike | None = None,
        oracle_training_record: str | os.PathLike | None = None,
        network: torch.nn.Module | None = None,
        prepare_batch: Callable = default_prepare_batch,
        inferer: Callable | None = None,
        member_split: str = "train",
        held_out_split: str = "test",
        min_group_cases: int = 5,
        report_name: str = "unlearning_report",
        name: str = "SegmentationUnlearningReport",
    ) -> None:
        for split in (member_split, held_out_split):
            if split not in loaders:
                raise ValueError(
                    f"SegmentationUnlearningReport needs a loader named {split!r}; got loaders {sorted(loaders)}."
                )
        if min_group_cases < 1:
            raise ValueError(f"Invalid min_group_cases {min_group_cases}: it must be at least 1.")
        super().__init__(
            output_dir=output_dir,
            loaders=loaders,
            forget_key=forget_key,
            class_names=class_names,
            forget_rule=forget_rule,
            training_record=training_record,
            network=network,
            prepare_batch=prepare_batch,
            evaluate_fn=functools.partial(evaluate_segmenter, inferer=inferer),
            report_name=report_name,
            name=name,
            oracle_checkpoint=oracle_checkpoint,
            metric="dice",
            train_split=member_split,
            heldout_split=held_out_split,
        )
        self.retired_labels = [] if retired_labels is None else [int(v) for v in retired_labels]
        self.oracle_checkpoint = Path(oracle_checkpoint) if oracle_checkpoint is not None else None
        if oracle_training_record is None and self.oracle_checkpoint is not None:
            oracle_training_record = self.oracle_checkpoint.with_name("training_time.json")
        self.oracle_training_record = Path(oracle_training_record) if oracle_training_record is not None else None
        self.member_split = member_split
        self.held_out_split = held_out_split
        self.min_group_cases = min_group_cases
        self.evaluations: dict[str, dict[str, SegmenterEvaluation]] = {}
        self._process_start: float | None = None
        self.revision_process_seconds: float | None = None

    # ----------------------------------------------------------------------------------------------- evaluation
    def evaluate_before(self, engine: Engine) -> None:
        """Evaluate the retrain oracle (when given) and the original network, then start the CPU-time clock.

        The evaluations come from the base class's evaluation record (an ``UnlearningMetrics`` handler attached
        before this one, or a private one), which keeps each split's :class:`SegmenterEvaluation` with its
        per-case values.
        """
        if self.oracle_checkpoint is not None and not self.oracle_checkpoint.is_file():
            raise FileNotFoundError(
                f"Retrain oracle checkpoint {str(self.oracle_checkpoint)!r} not found; train the oracle first (the "
                "bundle's oracle.json overlay) or set oracle_checkpoint to None."
            )
        super().evaluate_before(engine)
        record = self._record
        assert record is not None and record.original is not None, "the base class sets the record"
        self.evaluations["original"] = dict(record.original.splits)
        if record.oracle is not None:
            self.evaluations["oracle"] = dict(record.oracle.splits)
            self.logger.info("Evaluated the retrain oracle %s.", self.oracle_checkpoint)
        self._process_start = time.process_time()

    def evaluate_after(self, engine: Engine) -> None:
        """Stop the CPU-time clock, then evaluate the revised network and write the report."""
        if self._process_start is not None:
            self.revision_process_seconds = time.process_time() - self._process_start
        super().evaluate_after(engine)

    # ----------------------------------------------------------------------------------------------- report
    def _build(self, engine: Engine) -> dict[str, Any]:
        record = self._record
        assert record is not None and record.revised is not None, "evaluate_after checks the revised evaluation"
        self.evaluations["revised"] = dict(record.revised.splits)
        report = super()._build(engine)
        report["segmentation"] = self._segmentation_section()
        self._add_timing(report["timing"])
        if self.oracle_checkpoint is not None:
            digest = sha256_file(self.oracle_checkpoint)
            report["oracle"] = {**(report.get("oracle") or {}), "checkpoint": str(self.oracle_checkpoint), "sha256": digest}
        return report

    def _add_timing(self, timing: dict[str, Any]) -> None:
        """Add the revision's CPU time, the training times of the original and the oracle, and the speedups."""
        timing["revision_process_seconds"] = self.revision_process_seconds
        original = _read_json(self.training_record) or {}
        if original.get("process_time_seconds"):
            timing["original_training_process_seconds"] = original["process_time_seconds"]
            if self.revision_process_seconds:
                timing["process_speedup"] = original["process_time_seconds"] / self.revision_process_seconds
        oracle = _read_json(self.oracle_training_record) or {}
        if oracle.get("wall_time_seconds"):
            timing["oracle_training_seconds"] = oracle["wall_time_seconds"]
            if self.revision_seconds:
                timing["speedup_vs_oracle"] = oracle["wall_time_seconds"] / self.revision_seconds
        if oracle.get("process_time_seconds"):
            timing["oracle_training_process_seconds"] = oracle["process_time_seconds"]
            if self.revision_process_seconds:
                timing["process_speedup_vs_oracle"] = oracle["process_time_seconds"] / self.revision_process_seconds

    def _held_out_group(self, evaluation: SegmenterEvaluation) -> tuple[np.ndarray, str]:
        flagged = evaluation.flags == 1
        if flagged.sum() >= self.min_group_cases and not flagged.all():
            return flagged, "held-out cases that match the forget rule"
        return np.ones_like(flagged, dtype=bool), "all held-out cases"

    def _model_metrics(self, evaluations: dict[str, SegmenterEvaluation]) -> dict[str, Any]:
        members = evaluations[self.member_split]
        held_out = evaluations[self.held_out_split]
        names = members.foreground_names
        forget = members.flags == 1
        group, _ = self._held_out_group(held_out)

        def dice_of(evaluation: SegmenterEvaluation, mask: np.ndarray) -> dict[str, float | None]:
            return {name: _nanmean(evaluation.dice[mask, index]) for index, name in enumerate(names)}

        def mean_dice(evaluation: SegmenterEvaluation, mask: np.ndarray) -> float | None:
            return _nanmean(evaluation.dice[mask].mean(axis=1)) if mask.any() else None

        metrics: dict[str, Any] = {
            "forget_dice": dice_of(members, forget),
            "retain_dice": dice_of(members, ~forget),
            "held_out_dice": dice_of(held_out, group),
            "forget_mean_dice": mean_dice(members, forget),
            "retain_mean_dice": mean_dice(members, ~forget),
            "held_out_mean_dice": mean_dice(held_out, group),
            "forget_mean_loss": _nanmean(members.losses[forget]),
            "held_out_mean_loss": _nanmean(held_out.losses[group]),
        }
        forget_dice, held_out_dice = metrics["forget_mean_dice"], metrics["held_out_mean_dice"]
        metrics["forget_minus_held_out_dice"] = (
            forget_dice - held_out_dice if forget_dice is not None and held_out_dice is not None else None
        )
        metrics["mia"] = case_loss_mia(members.losses[forget], held_out.losses[group]) if forget.any() else None
        metrics["predicted_voxels"] = {
            name: int(sum(e.summary["predicted_voxels"][name] for e in evaluations.values()))
            for name in members.class_names
        }
        return metrics

    def _segmentation_section(self) -> dict[str, Any]:
        held_out = self.evaluations["original"][self.held_out_split]
        _, group_description = self._held_out_group(held_out)
        models = {model: self._model_metrics(self.evaluations[model]) for model in MODELS if model in self.evaluations}
        section: dict[str, Any] = {
            "labels": held_out.foreground_names,
            "member_split": self.member_split,
            "held_out_split": self.held_out_split,
            "held_out_group": group_description,
            "models": models,
        }
        if "oracle" in models:
            section["gap_to_oracle"] = {
                model: _gaps(models[model], models["oracle"]) for model in ("original", "revised")
            }
        if self.retired_labels:
            section["retired_labels"] = self._retired_section()
        return section

    def _retired_section(self) -> dict[str, Any]:
        names = self.evaluations["original"][self.held_out_split].class_names
        retired: dict[str, Any] = {}
        for label in self.retired_labels:
            if not 0 < label < len(names):
                raise ValueError(f"Retired label {label} is not a foreground class of {names}.")
            name = names[label]
            retired[name] = {
                model: {
                    "dice": {split: _nanmean(e.dice[:, label - 1]) for split, e in evaluations.items()},
                    "predicted_voxels": int(sum(e.summary["predicted_voxels"][name] for e in evaluations.values())),
                    "cases_predicting": int(sum(e.summary["cases_predicting"][name] for e in evaluations.values())),
                }
                for model, evaluations in self.evaluations.items()
            }
        return retired

    def write(self) -> tuple[Path, Path]:
        """Write the PNG plots, the JSON and the Markdown reports, and return the paths of the two reports."""
        if self.plots and self.report.get("models"):
            self.report["plots"] = self._write_plots()
        json_path = atomic_write_json(self.output_dir / f"{self.report_name}.json", self.report)
        markdown_path = atomic_write_text(
            self.output_dir / f"{self.report_name}.md", format_segmentation_markdown(self.report)
        )
        self.logger.info("Wrote the segmentation unlearning report to %s and %s.", json_path, markdown_path)
        return json_path, markdown_path


def _read_json(path: Path | None) -> dict[str, Any] | None:
    if path is None or not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _nanmean(values: np.ndarray) -> float | None:
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else None


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """Flatten a model's metrics to ``name -> value`` for the metrics compared with the oracle."""
    flat: dict[str, float] = {}
    for key in ("forget_dice", "retain_dice", "held_out_dice"):
        for label, value in metrics[key].items():
            if value is not None:
                flat[f"{key}/{label}"] = value
    for key in ("forget_mean_dice", "retain_mean_dice", "held_out_mean_dice", "forget_minus_held_out_dice"):
        if metrics[key] is not None:
            flat[key] = metrics[key]
    if metrics.get("mia") is not None:
        flat["mia_auc"] = metrics["mia"]["auc"]
    return flat


def _gaps(model: dict[str, Any], oracle: dict[str, Any]) -> dict[str, float]:
    """Return the absolute difference from the oracle on each shared metric, and their mean over Dice metrics."""
    ours, theirs = _scalars(model), _scalars(oracle)
    gaps = {key: abs(ours[key] - theirs[key]) for key in ours if key in theirs}
    dice_gaps = [value for key, value in gaps.items() if "dice" in key]
    gaps["mean_dice_gap"] = float(np.mean(dice_gaps)) if dice_gaps else float("nan")
    return gaps


def _summary_lines(report: dict[str, Any]) -> list[str]:
    lines = ["# Unlearning report (segmentation)", ""]
    method = report.get("method") or {}
    if method:
        settings = ", ".join(f"{k}={v}" for k, v in method.items() if k != "name" and v is not None)
        lines.append(f"- Method: `{method.get('preset', method.get('name'))}`" + (f" ({settings})" if settings else ""))
    if report.get("forget_rule"):
        lines.append(f"- Forget rule: `{report['forget_rule']}`")
    section = report.get("segmentation") or {}
    if section.get("retired_labels"):
        lines.append(f"- Retired labels: {', '.join(section['retired_labels'])}")
    if report.get("flip_rate") is not None:
        lines.append(f"- Boundary-label flip rate (last pass): {report['flip_rate']:.4f}")
    lines += _timing_lines(report.get("timing") or {})
    if report.get("device"):
        lines.append(f"- Device: {report['device']}")
    checkpoints = report.get("checkpoints") or {}
    if checkpoints.get("original_backup"):
        lines.append(f"- Original checkpoint kept as `{Path(checkpoints['original_backup']).name}`")
    lines.append("")
    return lines


def _mia_value(metrics: dict[str, Any], key: str) -> float | None:
    return None if metrics["mia"] is None else metrics["mia"][key]


def _timing_lines(timing: dict[str, Any]) -> list[str]:
    lines = []
    if timing.get("revision_seconds") is not None:
        text = f"- Revision wall time: {timing['revision_seconds']:.1f} s"
        if timing.get("revision_process_seconds") is not None:
            text += f" (CPU time {timing['revision_process_seconds']:.1f} s)"
        lines.append(text)
    trainings = (
        ("Original training", "original_training", ""),
        ("Retrain oracle training", "oracle_training", "_vs_oracle"),
    )
    for title, prefix, suffix in trainings:
        wall = timing.get(f"{prefix}_seconds")
        if wall is None:
            continue
        text = f"- {title}: wall time {wall:.1f} s"
        if timing.get(f"speedup{suffix}") is not None:
            text += f", {timing[f'speedup{suffix}']:.1f} times the revision's"
        process = timing.get(f"{prefix}_process_seconds")
        if process is not None:
            text += f"; CPU time {process:.1f} s"
            if timing.get(f"process_speedup{suffix}") is not None:
                text += f", {timing[f'process_speedup{suffix}']:.1f} times the revision's"
        lines.append(text)
    return lines


def _comparison_lines(section: dict[str, Any]) -> list[str]:
    models = section["models"]
    present = [m for m in MODELS if m in models]
    with_oracle = "oracle" in models
    lines = [
        "## Original, revised and retrain oracle",
        "",
        f"Forget and retain cases come from the `{section['member_split']}` split; held-out cases are "
        f"{section['held_out_group']} of the `{section['held_out_split']}` split.",
        "",
        "| metric | " + " | ".join(present) + (" | revised - oracle |" if with_oracle else " |"),
        "| --- |" + " --- |" * (len(present) + int(with_oracle)),
    ]
    rows: list[tuple[str, Callable[[dict[str, Any]], Any]]] = []
    for label in section["labels"]:
        for group, key in (("forget", "forget_dice"), ("retain", "retain_dice"), ("held-out", "held_out_dice")):
            rows.append((f"Dice {label}, {group} cases", lambda m, k=key, lab=label: m[k].get(lab)))
    rows += [
        ("mean Dice, forget cases", lambda m: m["forget_mean_dice"]),
        ("mean Dice, retain cases", lambda m: m["retain_mean_dice"]),
        ("mean Dice, held-out cases", lambda m: m["held_out_mean_dice"]),
        ("forget minus held-out mean Dice", lambda m: m["forget_minus_held_out_dice"]),
        ("case loss, forget cases", lambda m: m["forget_mean_loss"]),
        ("case loss, held-out cases", lambda m: m["held_out_mean_loss"]),
        ("case-level MIA AUC (loss threshold)", lambda m: _mia_value(m, "auc")),
        ("case-level MIA best balanced accuracy", lambda m: _mia_value(m, "balanced_accuracy")),
    ]
    for title, read in rows:
        line = f"| {title} | " + " | ".join(_cell(read(models[m])) for m in present) + " |"
        if with_oracle:
            revised, oracle = read(models["revised"]), read(models["oracle"])
            line += f" {_change(oracle, revised) or 'n/a'} |"
        lines.append(line)
    mia = models["original"].get("mia")
    if mia is not None:
        lines.append(f"\nThe attack compares {mia['members']} forget cases with {mia['non_members']} held-out cases.")
    gaps = section.get("gap_to_oracle")
    if gaps:
        lines.append(
            f"Mean absolute Dice gap to the oracle: original {gaps['original']['mean_dice_gap']:.4f}, "
            f"revised {gaps['revised']['mean_dice_gap']:.4f}."
        )
    lines.append("")
    return lines


def _retired_lines(retired: dict[str, Any]) -> list[str]:
    lines = [
        "## Retired labels",
        "",
        "| label | model | Dice by split | predicted voxels | cases predicting it |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label, by_model in retired.items():
        for model, values in by_model.items():
            dice = ", ".join(f"{split} {_cell(value)}" for split, value in values["dice"].items())
            counts = f"{values['predicted_voxels']} | {values['cases_predicting']}"
            lines.append(f"| {label} | {model} | {dice} | {counts} |")
    lines.append("")
    return lines


def _row(title: str, before: Any, after: Any) -> str:
    return f"| {title} | {_cell(before)} | {_cell(after)} | {_change(before, after)} |"


def _split_lines(report: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for split, values in (report.get("splits") or {}).items():
        before, after = values["before"], values["after"]
        lines += [f"## Split `{split}` before and after", "", "| metric | before | after | change |"]
        lines.append("| --- | --- | --- | --- |")
        for key, title in (("mean_dice", "mean Dice, all cases"), ("forget_mean_dice", "mean Dice, forget cases"),
                           ("retain_mean_dice", "mean Dice, retain cases"), ("mean_loss", "case loss, all cases")):
            lines.append(_row(title, before.get(key), after.get(key)))
        for label, value in (before.get("dice") or {}).items():
            after_value = (after.get("dice") or {}).get(label)
            lines.append(_row(f"Dice {label}, all cases", value, after_value))
        lines.append(
            f"\n{before.get('cases')} cases: {before.get('forget_cases')} forget, "
            f"{before.get('retain_cases')} retain.\n"
        )
    return lines


def _pass_lines(report: dict[str, Any]) -> list[str]:
    passes = report.get("passes") or []
    if not passes:
        return []
    columns = ("forget_samples", "retain_samples", "flip_rate", "forget_loss", "retain_loss")
    keys = [k for k in columns if k in passes[0]]
    lines = ["## Passes", "", "| pass | " + " | ".join(keys) + " |", "| --- |" + " --- |" * len(keys)]
    for entry in passes:
        lines.append(f"| {int(entry['pass'])} | " + " | ".join(_cell(entry.get(k)) for k in keys) + " |")
    lines.append("")
    return lines


def format_segmentation_markdown(report: dict[str, Any]) -> str:
    """Render a segmentation report dictionary (as written to JSON) as a Markdown summary."""
    lines = _summary_lines(report)
    section = report.get("segmentation")
    if section:
        lines += _comparison_lines(section)
        if section.get("retired_labels"):
            lines += _retired_lines(section["retired_labels"])
    lines += _split_lines(report)
    lines += _pass_lines(report)
    return "\n".join(lines)
