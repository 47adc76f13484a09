# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Compare every unlearning method with the original model and the retrain oracle on two real tasks.

Usage (from the repository root, with ``MONAI_UNLEARN_DATA`` pointing at the data directory)::

    python benchmarks/compare_methods.py                 # the full setting: 3 seeds, writes docs/results.md
    python benchmarks/compare_methods.py --small         # a few minutes on CPU: fewer images, epochs and seeds
    python benchmarks/compare_methods.py --render docs/results.json   # rewrite the page from a run's raw results

Tasks:

- ``modality``: forget the breast ultrasound class of ``bundles/modality_classifier``.
- ``pneumonia``: forget a random 10 % of the training images of ``bundles/pneumonia_classifier`` (PneumoniaMNIST),
  a stand-in for patients' deletion requests. Seed ``s`` forgets the images with ``request_group == s``, so every
  seed draws another random subset.

For each task the script copies the bundle into a work folder and builds its data there with the library builder
that the bundle's ``scripts/prepare_data.py`` calls, at the setting's sizes. Then, for each seed, it:

1. trains the original with the bundle's ``train.json`` through ``monai.bundle.run`` (in this process);
2. trains the retrain oracle with ``monai_unlearn.oracle.train_oracle`` (the bundle CLI, cached by config, forget
   manifest and seed);
3. runs every method as the bundle's own trainer: ``train.json`` + ``unlearn.json`` + the method's overlay, with the
   trainer instantiated from the merged config and only a ``CheckpointLoader`` of the original as its handler. The
   baselines use the overlays in ``configs/baselines/``, and the paper's presets use ``unlearn.json`` with
   ``unlearn#method`` set to the preset;
4. evaluates the original, the oracle and every revised model with one ``EvaluationSuite`` (the same loaders,
   metrics and four membership inference attacks), and computes each model's gap to that seed's oracle.

NOTE: relearn time is not measured here, because it would add about a hundred fine-tuning steps per row; the report of
a bundle revision (``unlearn#relearn``) measures it.

The page lists the mean and the sample standard deviation over seeds of every metric, the gap to the oracle and the
cost (revision wall time, its ratio to the oracle's training time, and peak memory). Every row comes from this one
run. The raw per-seed values are written as JSON beside the page.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

REPOSITORY = Path(__file__).resolve().parents[1]

logger = logging.getLogger("compare_methods")

#: Baselines in table order, each run from ``configs/baselines/<name>.json``.
BASELINE_NAMES = (
    "finetune",
    "neggrad",
    "neggrad_plus",
    "random_labels",
    "boundary_shrink",
    "boundary_expanding",
    "scrub",
    "salun",
    "l1_sparse",
    "ssd",
)
#: The presets of Nahass et al. (arXiv:2505.21872), except ``boundary_shrink``, which is listed as a baseline. Each
#: runs with the settings of ``unlearn.json`` and ``unlearn#method`` set to the preset.
PAPER_PRESETS = ("psg", "psg_retain", "psg_soft", "psg_multistep")
#: The rows of every table: the two references, then the baselines, then the paper's presets.
REFERENCE_ROWS = ("original", "oracle")
ALL_ROWS = REFERENCE_ROWS + BASELINE_NAMES + PAPER_PRESETS

#: Columns of the accuracy table, the attack table and the gap table: metric key and column title.
ACCURACY_COLUMNS = (
    ("forget_train_accuracy", "forget (train)"),
    ("forget_heldout_accuracy", "forget (held-out)"),
    ("retain_accuracy", "retain"),
    ("test_accuracy", "test"),
    ("test_retain_accuracy", "test, retained classes"),
)
ATTACK_COLUMNS = (
    ("mia_loss_threshold_auc", "loss threshold AUC"),
    ("mia_loss_logistic_auc", "loss logistic AUC"),
    ("mia_efficacy", "confidence SVC MIA-efficacy"),
    ("mia_entropy_efficacy", "entropy SVC MIA-efficacy"),
    ("mia_confidence_svc_auc", "confidence SVC AUC"),
)
GAP_COLUMNS = (
    ("gap_mean", "mean gap"),
    ("gap_forget_train_accuracy", "gap forget (train)"),
    ("gap_forget_heldout_accuracy", "gap forget (held-out)"),
    ("gap_retain_accuracy", "gap retain"),
    ("gap_test_accuracy", "gap test"),
    ("gap_mia_efficacy", "gap MIA-efficacy"),
    ("gap_mia_loss_threshold_auc", "gap loss AUC"),
)
COST_COLUMNS = (
    ("wall_seconds", "wall time (s)"),
    ("time_vs_oracle", "time / oracle training"),
    ("peak_memory_mib", "peak memory (MiB)"),
)


@dataclass
class Setting:
    """Sizes of one benchmark setting.

    Attributes:
        name: ``"full"`` or ``"small"``.
        seeds: number of seeds (seed ``s`` runs for ``s = 0 .. seeds - 1``).
        epochs: training epochs of the original and the oracle, by task.
        modality_data: arguments of :func:`monai_unlearn.data.build_modality_dataset`.
        pneumonia_counts: training, validation and test images of the PneumoniaMNIST task (None keeps all).
    """

    name: str
    seeds: int
    epochs: dict[str, int]
    modality_data: dict[str, Any] = field(default_factory=dict)
    pneumonia_counts: tuple[int | None, int | None, int | None] = (None, None, None)


# The full setting keeps about 600 training images per task and trains for fewer epochs than the bundles' own
# recipes (30 and 20). This is an estimate sized so that 2 tasks x 3 seeds x 16 rows take about 30 minutes on a
# quiet 2-core CPU.
FULL_SETTING = Setting(
    name="full",
    seeds=3,
    epochs={"modality": 8, "pneumonia": 10},
    modality_data=dict(
        chest_counts=(200, 50, 100),
        breast_counts=(200, 50, 100),
        max_hippocampus_cases=50,
        max_dicom_files_per_vendor=40,
    ),
    pneumonia_counts=(600, 270, 468),
)
SMALL_SETTING = Setting(
    name="small",
    seeds=2,
    epochs={"modality": 4, "pneumonia": 6},
    modality_data=dict(
        chest_counts=(60, 20, 40),
        breast_counts=(60, 20, 40),
        max_hippocampus_cases=20,
        hippocampus_slices=(0.5,),
        max_dicom_files_per_vendor=30,
    ),
    pneumonia_counts=(200, 40, 80),
)


@dataclass
class Task:
    """One forgetting task: a bundle, its data builder and the forget rule of each seed."""

    name: str
    title: str
    bundle: Path
    forget_rule: Callable[[int], str]
    build_data: Callable[[Path, Setting], Path]


def _build_modality(output_dir: Path, setting: Setting) -> Path:
    from monai_unlearn.data import build_modality_dataset

    return build_modality_dataset(output_dir, **setting.modality_data)


def _build_pneumonia(output_dir: Path, setting: Setting) -> Path:
    from monai_unlearn.data import build_pneumonia_dataset

    return build_pneumonia_dataset(output_dir, counts=setting.pneumonia_counts)


TASKS = {
    "modality": Task(
        name="modality",
        title="Class forgetting: the breast ultrasound class of the modality classifier",
        bundle=REPOSITORY / "bundles" / "modality_classifier",
        forget_rule=lambda seed: "label in {1}",
        build_data=_build_modality,
    ),
    "pneumonia": Task(
        name="pneumonia",
        title="Subset forgetting: a random 10 % of the PneumoniaMNIST training images",
        bundle=REPOSITORY / "bundles" / "pneumonia_classifier",
        forget_rule=lambda seed: f"request_group == {seed}",
        build_data=_build_pneumonia,
    ),
}


# ---------------------------------------------------------------------------------------------------------------------
# Running one task


def prepare_bundle(task: Task, setting: Setting, work_dir: Path) -> Path:
    """Copy the task's bundle (configs, scripts, docs) into ``work_dir`` and build its data there."""
    bundle = work_dir / task.name / task.bundle.name
    if bundle.exists():
        shutil.rmtree(bundle)
    bundle.mkdir(parents=True)
    for folder in ("configs", "scripts", "docs"):
        if (task.bundle / folder).is_dir():
            shutil.copytree(task.bundle / folder, bundle / folder, ignore=shutil.ignore_patterns("__pycache__"))
    task.build_data(bundle / "data", setting)
    return bundle


def _config_files(bundle: Path, *names: str) -> list[str]:
    return [str(bundle / "configs" / name) for name in names]


def train_original(bundle: Path, seed: int, epochs: int, output_dir: Path) -> tuple[Path, dict[str, Any]]:
    """Train the original with the bundle's ``train.json`` through ``monai.bundle.run``; return weights and record."""
    from monai.bundle import run

    output_dir.mkdir(parents=True, exist_ok=True)
    run(
        config_file=_config_files(bundle, "train.json"),
        meta_file=str(bundle / "configs" / "metadata.json"),
        bundle_root=str(bundle),
        ckpt_dir=str(output_dir),
        determinism_seed=seed,
        num_epochs=epochs,
        val_interval=1,
    )
    record = json.loads((output_dir / "training_time.json").read_text(encoding="utf-8"))
    return output_dir / "model.pt", record


def load_weights(network: torch.nn.Module, path: Path) -> torch.nn.Module:
    """Load a bundle checkpoint (a state dict, or ``{"model": state dict}``) into ``network``."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    network.load_state_dict(state)
    return network.eval()


def method_overrides(method: str) -> tuple[list[str], dict[str, Any]]:
    """Return the extra config files and overrides that select ``method`` on top of ``unlearn.json``."""
    if method in BASELINE_NAMES:
        return [f"baselines/{method}.json"], {}
    if method in PAPER_PRESETS:
        return [], {"unlearn#method": method}
    raise ValueError(f"Unknown method {method!r}: expected one of {BASELINE_NAMES + PAPER_PRESETS}.")


class TaskRun:
    """The shared state of one task and seed: parsed bundle config, evaluation loaders and the two references."""

    def __init__(self, bundle: Path, forget_rule: str, seed: int) -> None:
        from monai.bundle import ConfigParser

        from monai_unlearn.audit.bundle_config import merge_bundle_config
        from monai_unlearn.metrics import EvaluationSuite

        self.bundle = bundle
        self.forget_rule = forget_rule
        self.seed = seed
        self.overrides = {"bundle_root": str(bundle), "forget_rule": forget_rule, "unlearn#seed": seed}
        content = merge_bundle_config(_config_files(bundle, "train.json", "unlearn.json"), self.overrides)
        self.parser = ConfigParser(content)
        self.device = self.parser.get_parsed_content("device")
        self.class_names = list(self.parser.get_parsed_content("class_names"))
        # The training loader (cached images, TagForgetd, the bundle's augmentation) is built once and passed to every
        # method's trainer through the parser's globals, so that all methods train on the same cached samples.
        self.train_loader = self.parser.get_parsed_content("train#dataloader")
        loaders = {
            "train": self.parser.get_parsed_content("unlearn#train_evaluation_loader"),
            "test": self.parser.get_parsed_content("unlearn#test_loader"),
        }
        self.suite = EvaluationSuite(loaders, class_names=self.class_names, attack_seed=seed)

    def new_network(self, weights: Path) -> torch.nn.Module:
        """Instantiate the bundle's network anew and load ``weights`` into it."""
        network = self.parser.get_parsed_content("network_def", lazy=False).to(self.device)
        return load_weights(network, weights)

    def evaluate(self, network: torch.nn.Module, name: str) -> dict[str, Any]:
        """Evaluate a network with the task's suite and return its headline and attack metrics."""
        evaluation = self.suite.evaluate(network, self.device, name)
        return dict(evaluation.metrics)

    def revise(
        self, method: str, original_weights: Path, max_passes: int | None = None
    ) -> tuple[torch.nn.Module, dict[str, Any]]:
        """Run ``method`` as the bundle's trainer on the original weights; return the revised network and its cost.

        ``max_passes`` caps the overlay's pass budget (for quick structure checks); None keeps it.
        """
        from monai.bundle import ConfigParser
        from monai.utils import set_determinism

        from monai_unlearn.audit.bundle_config import merge_bundle_config
        from monai_unlearn.metrics import CostMonitor

        extra_files, extra_overrides = method_overrides(method)
        files = _config_files(self.bundle, "train.json", "unlearn.json", *extra_files)
        overrides = {
            **self.overrides,
            **extra_overrides,
            "train#trainer#train_data_loader": "$benchmark_train_loader",
            # Only the loader of the original weights: the report, saver and evaluation handlers of unlearn.json
            # would evaluate and write files, and this script evaluates every model itself with one suite.
            "train#trainer#train_handlers": [
                {
                    "_target_": "CheckpointLoader",
                    "load_path": str(original_weights),
                    "load_dict": {"model": "@network"},
                    "map_location": "@device",
                }
            ],
        }
        parser = ConfigParser(
            merge_bundle_config(files, overrides), globals={"benchmark_train_loader": self.train_loader}
        )
        if max_passes is not None:
            parser["unlearn#passes"] = min(int(parser.get_parsed_content("unlearn#passes")), max_passes)
        set_determinism(seed=self.seed)
        trainer = parser.get_parsed_content("train#trainer")
        monitor = CostMonitor(self.device)
        with monitor:
            trainer.run()
        network = parser.get_parsed_content("network")
        settings = {
            "method": parser.get_parsed_content("unlearn#method"),
            "method_kwargs": parser.get_parsed_content("unlearn#method_kwargs"),
            "passes": int(parser.get_parsed_content("unlearn#passes")),
            "learning_rate": float(parser.get_parsed_content("unlearn#learning_rate")),
            "optimizer": type(trainer.optimizer).__name__,
        }
        return network.eval(), {"cost": monitor.cost.to_dict(), "settings": settings}


def _training_cost(record: dict[str, Any] | None) -> dict[str, Any]:
    record = record or {}
    return {"wall_seconds": record.get("wall_time_seconds"), "peak_memory_bytes": record.get("peak_memory_bytes")}


def run_task(
    task: Task,
    setting: Setting,
    work_dir: Path,
    methods: Sequence[str],
    seeds: Sequence[int],
    max_passes: int | None = None,
) -> dict:
    """Run the original, the oracle and ``methods`` on ``task`` for every seed; return the per-seed results."""
    from monai_unlearn.metrics import oracle_gap
    from monai_unlearn.oracle import train_oracle
    from monai_unlearn.transforms import as_rule

    bundle = prepare_bundle(task, setting, work_dir)
    epochs = setting.epochs[task.name]
    per_seed: dict[int, dict[str, Any]] = {}
    for seed in seeds:
        rule = task.forget_rule(seed)
        logger.info("Task %s, seed %d: forget rule %r.", task.name, seed, rule)
        rows: dict[str, dict[str, Any]] = {}

        original_weights, original_record = train_original(
            bundle, seed, epochs, work_dir / task.name / f"original_seed{seed}"
        )
        oracle = train_oracle(
            bundle,
            cache_dir=work_dir / task.name / "oracle_cache",
            forget_rule=rule,
            seed=seed,
            overrides={"num_epochs": epochs, "val_interval": 1},
            environment={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())},
        )
        state = TaskRun(bundle, rule, seed)
        training_entries = state.parser.get_parsed_content("train_datalist")
        counts = {
            "forget_train": sum(1 for entry in training_entries if as_rule(rule).matches(entry)),
            "train": len(training_entries),
        }

        rows["original"] = {
            "metrics": state.evaluate(state.new_network(original_weights), "original"),
            "cost": _training_cost(original_record),
        }
        rows["oracle"] = {
            "metrics": state.evaluate(state.new_network(Path(oracle.checkpoint)), "oracle"),
            "cost": _training_cost(oracle.record.get("training")),
            "reused": bool(oracle.reused),
        }
        for method in methods:
            logger.info("Task %s, seed %d: running %s.", task.name, seed, method)
            network, details = state.revise(method, original_weights, max_passes)
            rows[method] = {"metrics": state.evaluate(network, method), **details}

        oracle_metrics = rows["oracle"]["metrics"]
        oracle_seconds = rows["oracle"]["cost"]["wall_seconds"]
        for name, row in rows.items():
            gap = oracle_gap(row["metrics"], oracle_metrics, state.suite.gap_metrics)
            row["gap"] = gap
            cost = row["cost"]
            row["values"] = {
                **row["metrics"],
                "gap_mean": gap["mean"] if name != "oracle" else 0.0,
                **{f"gap_{key}": value for key, value in gap["per_metric"].items()},
                "wall_seconds": cost.get("wall_seconds"),
                "time_vs_oracle": (
                    cost["wall_seconds"] / oracle_seconds if cost.get("wall_seconds") and oracle_seconds else None
                ),
                "peak_memory_mib": (
                    cost["peak_memory_bytes"] / 2**20 if cost.get("peak_memory_bytes") is not None else None
                ),
            }
        per_seed[seed] = {"forget_rule": rule, "counts": counts, "rows": rows}
    return {"title": task.title, "epochs": epochs, "bundle": task.bundle.name, "seeds": per_seed}


# ---------------------------------------------------------------------------------------------------------------------
# Aggregation and the results page


def aggregate(task_result: dict, rows: Sequence[str]) -> dict[str, dict[str, tuple[float | None, float | None]]]:
    """Return ``{row: {metric: (mean, sample standard deviation)}}`` over the seeds of a task.

    A metric that is None in some seed (such as the held-out forget accuracy under subset forgetting, where the
    held-out split has no forget sample) is averaged over the seeds that have it. The standard deviation is None
    with a single value.
    """
    table: dict[str, dict[str, tuple[float | None, float | None]]] = {}
    for row in rows:
        values: dict[str, list[float]] = {}
        for seed_result in task_result["seeds"].values():
            for key, value in seed_result["rows"][row]["values"].items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    values.setdefault(key, []).append(float(value))
        table[row] = {
            key: (statistics.fmean(items), statistics.stdev(items) if len(items) > 1 else None)
            for key, items in values.items()
        }
    return table


def _cell(statistic: tuple[float | None, float | None] | None, digits: int = 3) -> str:
    if statistic is None or statistic[0] is None:
        return "n/a"
    mean, std = statistic
    text = f"{mean:.{digits}f}"
    return text if std is None else f"{text} ± {std:.{digits}f}"


def _row_label(row: str) -> str:
    if row in PAPER_PRESETS:
        return f"**{row}** (paper)"
    return f"`{row}`" if row not in REFERENCE_ROWS else f"*{row}*"


def markdown_table(table: dict, rows: Sequence[str], columns: Sequence[tuple[str, str]], digits: int = 3) -> list[str]:
    """Return the lines of a Markdown table with one row per method and ``mean ± std`` cells."""
    lines = ["| method | " + " | ".join(title for _, title in columns) + " |"]
    lines.append("| --- |" + " ---: |" * len(columns))
    for row in rows:
        cells = [_cell(table[row].get(key), digits) for key, _ in columns]
        lines.append(f"| {_row_label(row)} | " + " | ".join(cells) + " |")
    return lines


def _mean(table: dict, row: str, key: str) -> float | None:
    statistic = table.get(row, {}).get(key)
    return statistic[0] if statistic else None


def findings(task_result: dict, table: dict, rows: Sequence[str]) -> list[str]:
    """Return measured statements about a task: the ranking by mean gap, where the paper's presets stand, and how the
    original's attack scores compare with the oracle's."""
    methods = [row for row in rows if row not in REFERENCE_ROWS and _mean(table, row, "gap_mean") is not None]
    ranked = sorted(methods, key=lambda row: _mean(table, row, "gap_mean"))
    lines = []
    original_gap = _mean(table, "original", "gap_mean")
    if ranked:
        order = ", ".join(f"`{row}` {_mean(table, row, 'gap_mean'):.3f}" for row in ranked)
        lines.append(
            f"- Ranking by mean gap to the oracle (lower is better): {order}. The original: {original_gap:.3f}."
        )
    presets = [row for row in ranked if row in PAPER_PRESETS]
    baselines = [row for row in ranked if row in BASELINE_NAMES]
    if presets and baselines:
        best_preset, best_baseline = presets[0], baselines[0]
        preset_gap, baseline_gap = _mean(table, best_preset, "gap_mean"), _mean(table, best_baseline, "gap_mean")
        if round(preset_gap, 3) == round(baseline_gap, 3):
            verdict = "ties with"
        else:
            verdict = "beats" if preset_gap < baseline_gap else "does not beat"
        lines.append(
            f"- The best preset of the paper's method, `{best_preset}` (mean gap {preset_gap:.3f}), {verdict} the best "
            f"baseline, `{best_baseline}` ({baseline_gap:.3f}). It ranks {ranked.index(best_preset) + 1} of "
            f"{len(ranked)} methods."
        )
    for key, title in GAP_COLUMNS[1:]:
        candidates = [row for row in ranked if _mean(table, row, key) is not None]
        if not candidates or not presets:
            continue
        nearest = min(candidates, key=lambda row: _mean(table, row, key))
        preset = min((row for row in candidates if row in PAPER_PRESETS), key=lambda row: _mean(table, row, key))
        if nearest in PAPER_PRESETS or round(_mean(table, preset, key), 3) == round(_mean(table, nearest, key), 3):
            value = _mean(table, preset, key)
            lines.append(f"- {title}: the paper's `{preset}` is nearest to the oracle, or tied for it ({value:.3f}).")
        else:
            lines.append(
                f"- {title}: `{nearest}` is nearest to the oracle ({_mean(table, nearest, key):.3f}); the best preset, "
                f"`{preset}`, has {_mean(table, preset, key):.3f}."
            )
    if original_gap is not None:
        for row in presets:
            gap = _mean(table, row, "gap_mean")
            relation = "lands nearer to" if gap < original_gap else "does not land nearer to"
            lines.append(
                f"- `{row}` {relation} the oracle than the original (mean gap {gap:.3f} against {original_gap:.3f})."
            )
    # Where a preset's forget accuracy falls below the oracle's, it pushed forget images past what retraining does;
    # the test accuracy against the original's shows what that cost.
    oracle_forget = _mean(table, "oracle", "forget_train_accuracy")
    original_test = _mean(table, "original", "test_accuracy")
    for row in presets:
        forget, test = _mean(table, row, "forget_train_accuracy"), _mean(table, row, "test_accuracy")
        if None in (oracle_forget, original_test, forget, test) or forget >= oracle_forget - 0.05:
            continue
        lines.append(
            f"- `{row}` overshoots the oracle on the forget set: forget (train) accuracy {forget:.3f} against the "
            f"oracle's {oracle_forget:.3f}, with test accuracy {test:.3f} against the original's {original_test:.3f}."
        )
    # The attack AUCs grow with membership, so the original should score above the oracle; MIA-efficacy is the share
    # of forget samples called non-members, so the original should score below the oracle.
    for key, title, expected in (
        ("mia_loss_threshold_auc", "loss threshold AUC", "higher"),
        ("mia_loss_logistic_auc", "loss logistic AUC", "higher"),
        ("mia_efficacy", "MIA-efficacy", "lower"),
    ):
        original_value, oracle_value = _mean(table, "original", key), _mean(table, "oracle", key)
        if original_value is None or oracle_value is None:
            continue
        holds = original_value > oracle_value if expected == "higher" else original_value < oracle_value
        relation = expected if holds else f"not {expected}"
        per_seed = [
            (item["rows"]["original"]["values"].get(key), item["rows"]["oracle"]["values"].get(key))
            for item in task_result["seeds"].values()
        ]
        seeds_holding = sum(
            1
            for original_seed, oracle_seed in per_seed
            if original_seed is not None
            and oracle_seed is not None
            and (original_seed > oracle_seed if expected == "higher" else original_seed < oracle_seed)
        )
        spreads = [table[row][key][1] for row in REFERENCE_ROWS if table[row][key][1] is not None]
        spread_text = ""
        if spreads:
            size = "smaller" if abs(original_value - oracle_value) < max(spreads) else "larger"
            spread_text = f" The difference is {size} than the larger seed standard deviation ({max(spreads):.3f})."
        lines.append(
            f"- Forget-set {title}: original {original_value:.3f}, oracle {oracle_value:.3f}. The original's mean is "
            f"{relation} than the oracle's, and the original's value is {expected} in {seeds_holding} of "
            f"{len(per_seed)} seeds.{spread_text}"
        )
    return lines


def summary(results: dict) -> list[str]:
    """Return one line per task: where the paper's best preset ranks, and whether it lands nearer the oracle than the
    original."""
    lines = ["## Summary", ""]
    for task_result in results["tasks"].values():
        table = aggregate(task_result, results["rows"])
        methods = [row for row in results["rows"] if row not in REFERENCE_ROWS]
        ranked = sorted(
            (row for row in methods if _mean(table, row, "gap_mean") is not None),
            key=lambda row: _mean(table, row, "gap_mean"),
        )
        presets = [row for row in ranked if row in PAPER_PRESETS]
        original_gap = _mean(table, "original", "gap_mean")
        if not presets or original_gap is None:
            continue
        best = presets[0]
        gap = _mean(table, best, "gap_mean")
        nearer = [row for row in presets if _mean(table, row, "gap_mean") < original_gap]
        lines.append(
            f"- {task_result['title']}. The paper's best preset, `{best}`, ranks {ranked.index(best) + 1} of "
            f"{len(ranked)} methods by mean gap to the oracle ({gap:.3f}; best overall `{ranked[0]}`, "
            f"{_mean(table, ranked[0], 'gap_mean'):.3f}). {len(nearer)} of {len(presets)} presets land nearer to the "
            f"oracle than the original (mean gap {original_gap:.3f})."
        )
    lines.append("")
    return lines


def write_page(results: dict, output: Path, command: str) -> None:
    """Write the results page (Markdown) and the raw per-seed results (JSON beside it)."""
    lines = [
        "# Method comparison",
        "",
        "Every number on this page was measured in one run of",
        "",
        "```bash",
        command,
        "```",
        "",
        f"- date (UTC): {results['date']}; wall time of the whole run: {results['run_seconds'] / 60:.1f} min",
        f"- machine: {results['machine']}",
        f"- setting: `{results['setting']}`, seeds {results['seeds']}, torch threads {results['torch_threads']}"
        + (f", pass budgets capped at {results['max_passes']}" if results.get("max_passes") else ""),
        f"- raw per-seed values: [{output.with_suffix('.json').name}]({output.with_suffix('.json').name})",
        "",
        "Cells are the mean ± the sample standard deviation over the seeds. For each seed the oracle is the bundle",
        "retrained from scratch on that seed's retain set with the same recipe and seed, and every gap is",
        "`|value - oracle value|` of the same seed. The mean gap averages the gaps of forget (train and held-out),",
        "retain and test accuracy, MIA-efficacy and the loss threshold AUC (see docs/evaluation.md). A good",
        "revision has a small mean gap; 0 % forget accuracy is the target only when the oracle has it too.",
        "",
        "The original's and the oracle's wall time and peak memory are those of their training; the methods' are",
        "those of the revision (the trainer's run, without the evaluation). On a CPU, peak memory is the peak",
        "resident set size of the process. For the original and the methods it is this script's process, which also",
        "holds the cached datasets, and for the oracle it is its own bundle CLI process, so compare it between",
        "methods only. Relearn time is not measured here (the report of a bundle revision has it).",
        "",
        "The membership inference columns attack the forget set: the loss attacks against held-out samples of the",
        "same class (class forgetting) or with the forget set's class proportions (subset forgetting), the SVC",
        "attacks as SalUn and l1-sparse define MIA-efficacy. The attack AUCs grow with membership; MIA-efficacy is",
        "the share of forget samples that the attack calls non-members. Method settings are those of the bundles'",
        "overlays (docs/baselines.md); the paper's presets run with `unlearn.json` (2 passes, Adam 5e-4,",
        "epsilon 0.2).",
        "",
    ]
    if results.get("rendered_utc"):
        lines += [f"This page was rewritten from the run's raw results on {results['rendered_utc']} UTC.", ""]
    lines += summary(results)
    lines += settings_section()
    for task_name, task_result in results["tasks"].items():
        table = aggregate(task_result, results["rows"])
        first_seed = next(iter(task_result["seeds"].values()))
        rules = sorted({seed_result["forget_rule"] for seed_result in task_result["seeds"].values()})
        reused = [seed for seed, item in task_result["seeds"].items() if item["rows"]["oracle"].get("reused")]
        lines += [
            f"## {task_result['title']}",
            "",
            f"Bundle `{task_result['bundle']}`, original and oracle trained for {task_result['epochs']} epochs; "
            f"{first_seed['counts']['forget_train']} of {first_seed['counts']['train']} training images forgotten "
            f"(seed {next(iter(task_result['seeds']))}); forget rules: {', '.join(f'`{rule}`' for rule in rules)}.",
        ]
        if reused:
            lines.append(f"NOTE: the oracle of seeds {reused} was reused from the oracle cache of an earlier run.")
        lines += ["", "### Accuracy", ""]
        lines += markdown_table(table, results["rows"], ACCURACY_COLUMNS)
        lines += ["", "### Membership inference on the forget set", ""]
        lines += markdown_table(table, results["rows"], ATTACK_COLUMNS)
        lines += ["", "### Gap to the oracle and cost", ""]
        lines += markdown_table(table, results["rows"], GAP_COLUMNS + COST_COLUMNS)
        lines += ["", "### Measured findings", ""]
        lines += findings(task_result, table, results["rows"])
        lines.append("")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(lines), encoding="utf-8")
    output.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")


def settings_section() -> list[str]:
    """Return the page's description of the full and the small setting."""
    lines = ["## Settings", "", "| setting | seeds | task | training epochs | images (training, validation, test) |"]
    lines.append("| --- | ---: | --- | ---: | --- |")
    for setting in (FULL_SETTING, SMALL_SETTING):
        modality = ", ".join(f"{key}={value}" for key, value in setting.modality_data.items()) or "all"
        pneumonia = ", ".join("all" if count is None else str(count) for count in setting.pneumonia_counts)
        for task_name, images in (("modality", modality), ("pneumonia", pneumonia)):
            epochs = setting.epochs[task_name]
            lines.append(f"| `{setting.name}` | {setting.seeds} | {task_name} | {epochs} | {images} |")
    lines += [
        "",
        "The modality images are the arguments of `build_modality_dataset` (per split: training, validation, test).",
        "`--small` runs the small setting (a few minutes on CPU, same tables) and writes its page to",
        "`benchmarks/work/results.small.md` unless `--output` is given. `--seeds`, `--epochs`, `--tasks`,",
        "`--methods` and `--max-passes` change a setting, and the page header records the command.",
        "",
    ]
    return lines


def describe_machine() -> str:
    """Return the CPU model, core count, torch version and, when one is used, the GPU."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    text = f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}"
    if torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name(0)}"
    return text


# ---------------------------------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--small",
        action="store_true",
        help="small setting: about 200 training images per task, 4 (modality) or 6 (pneumonia) training epochs, 2 "
        "seeds (a few minutes on CPU); the page goes to benchmarks/work/results.small.md unless --output is given",
    )
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default: 3, or 2 with --small)")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS), help="tasks to run")
    parser.add_argument(
        "--methods",
        nargs="+",
        default=list(BASELINE_NAMES + PAPER_PRESETS),
        choices=list(BASELINE_NAMES + PAPER_PRESETS),
        help="methods to run besides the original and the oracle (default: all)",
    )
    parser.add_argument("--epochs", type=int, default=None, help="training epochs of the original and the oracle")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="the results page; the raw results go to the same name with .json (default: docs/results.md, or "
        "benchmarks/work/results.small.md with --small, so that a quick check leaves the committed page alone)",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="folder for bundle copies, checkpoints and the oracle cache (default: a temporary folder, removed "
        "at the end); an existing one reuses its cached oracles",
    )
    parser.add_argument(
        "--max-passes",
        type=int,
        default=None,
        help="cap every method's pass budget at this many passes (default: the overlays' budgets); for quick checks",
    )
    parser.add_argument(
        "--render",
        type=Path,
        default=None,
        help="rewrite the page from the raw results JSON of an earlier run (no training) and exit",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    return parser


@contextlib.contextmanager
def work_folder(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path.resolve()
        return
    with tempfile.TemporaryDirectory(prefix="compare_methods_") as folder:
        yield Path(folder)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    if arguments.output is None:
        small_page = REPOSITORY / "benchmarks" / "work" / "results.small.md"
        arguments.output = small_page if arguments.small else REPOSITORY / "docs" / "results.md"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(name)s - %(levelname)s - %(message)s")
    if arguments.render is not None:
        results = json.loads(arguments.render.read_text(encoding="utf-8"))
        results["rendered_utc"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
        write_page(results, arguments.output, results["command"])
        logger.info("Rewrote %s from %s.", arguments.output, arguments.render)
        return 0
    if arguments.threads is not None:
        torch.set_num_threads(arguments.threads)
    setting = SMALL_SETTING if arguments.small else FULL_SETTING
    seed_count = arguments.seeds if arguments.seeds is not None else setting.seeds
    if seed_count < 1:
        raise SystemExit(f"Invalid --seeds {seed_count}: give at least 1.")
    if arguments.epochs is not None:
        if arguments.epochs < 1:
            raise SystemExit(f"Invalid --epochs {arguments.epochs}: give at least 1.")
        setting.epochs = {name: arguments.epochs for name in setting.epochs}
    if arguments.max_passes is not None and arguments.max_passes < 1:
        raise SystemExit(f"Invalid --max-passes {arguments.max_passes}: give at least 1.")
    seeds = list(range(seed_count))
    methods = [name for name in BASELINE_NAMES + PAPER_PRESETS if name in arguments.methods]
    command = "python benchmarks/compare_methods.py " + " ".join(argv if argv is not None else sys.argv[1:])

    started = time.perf_counter()
    results: dict[str, Any] = {
        "command": command.strip(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "machine": describe_machine(),
        "setting": setting.name,
        "seeds": seeds,
        "torch_threads": torch.get_num_threads(),
        "max_passes": arguments.max_passes,
        "rows": list(REFERENCE_ROWS) + methods,
        "tasks": {},
    }
    with work_folder(arguments.work_dir) as work_dir:
        for name in arguments.tasks:
            results["tasks"][name] = run_task(TASKS[name], setting, work_dir, methods, seeds, arguments.max_passes)
    results["run_seconds"] = time.perf_counter() - started
    write_page(results, arguments.output, results["command"])
    logger.info("Wrote %s in %.1f min.", arguments.output, results["run_seconds"] / 60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
