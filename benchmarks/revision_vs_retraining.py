# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Benchmark: revising the modality classifier bundle against retraining it without the forget set.

Every run goes through the real bundle CLI (``python -m monai.bundle run``) in its own process, in copies of the
bundle under the work folder, one after the other:

1. the original training: ``configs/train.json`` on the whole training set (the model that is revised);
2. retraining, the retrain oracle: the same ``train.json`` recipe (epochs, validation, optimizer) on the retain set
   only, the gold standard that unlearning approximates;
3. revisions of the original: ``train.json`` + ``unlearn.json`` (class forgetting of breast ultrasound, the bundle's
   default), the same with ``unlearn_paired.json`` (separate forget and retain loaders), and the paired mode with the
   retain term off (``psg``).

For each run the table gives the wall time of the whole process (start-up, data caching and evaluation included),
the time of the engine alone (``TrainingTimeRecorder`` for training, the report's revision clock for revisions, which
excludes the before and after evaluations), the peak resident set of the process, the ratios to retraining, and the
test accuracy on the forgotten and the retained classes, computed here from each run's final ``models/model.pt``.

With ``--model segmenter`` it measures case forgetting on the hippocampus segmentation bundle instead, with that
bundle's own overlays: the original training (``train.json``), retraining on the retain cases (``train.json`` +
``unlearn.json`` + ``forget_cases.json`` + ``oracle.json``, the bundle's retrain oracle) and the revision
(``train.json`` + ``unlearn.json`` + ``forget_cases.json``, forgetting the cases of ``data/deletion_request.txt``). The
Dice columns come from the revision's report, which evaluates the original, the revised model and the oracle.

Usage (from the repository root)::

    python benchmarks/revision_vs_retraining.py          # full dataset and recipe, docs/benchmarks/revision_vs_retraining.md
    python benchmarks/revision_vs_retraining.py --small  # small dataset, 2 epochs, one revision (a check)
    python benchmarks/revision_vs_retraining.py --model segmenter  # docs/benchmarks/revision_vs_retraining_segmenter.md
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

import common

BUNDLE_FILES = ("configs", "docs", "scripts", "LICENSE")
SMALL_TRAINING = ["--num_epochs", "2", "--val_interval", "1"]
SEGMENTER_BUNDLE = common.REPOSITORY / "bundles" / "hippocampus_segmentation"
SEGMENTER_FORGET = "cases"


def copy_bundle(destination: Path, data: Path, source_bundle: Path = common.MODALITY_BUNDLE) -> Path:
    """Copy a bundle of the repository (configs, docs, scripts) to ``destination`` with ``data`` linked in."""
    if destination.exists():
        shutil.rmtree(destination)
    destination.mkdir(parents=True)
    for name in BUNDLE_FILES:
        source = source_bundle / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.is_file():
            shutil.copy2(source, destination / name)
    (destination / "data").symlink_to(data.resolve(), target_is_directory=True)
    return destination


def retain_data(data: Path, destination: Path, forget_rule: str) -> Path:
    """Write a data folder whose training list keeps only the retain samples (validation and test unchanged)."""
    from monai_unlearn.transforms import split_datalist

    destination.mkdir(parents=True, exist_ok=True)
    datalist = json.loads((data / "datalist.json").read_text())
    forget, retain = split_datalist(datalist["training"], forget_rule)
    datalist["training"] = list(retain)
    (destination / "datalist.json").write_text(json.dumps(datalist, indent=1))
    for item in data.iterdir():
        if item.name != "datalist.json" and not (destination / item.name).exists():
            (destination / item.name).symlink_to(item.resolve())
    return destination


def bundle_run(bundle: Path, configs: list[str], overrides: list[str]) -> common.ProcessResult:
    command = [
        sys.executable, "-m", "monai.bundle", "run",
        "--config_file", str(configs),
        "--meta_file", "configs/metadata.json",
        "--logging_file", "configs/logging.conf",
        *overrides,
    ]  # fmt: skip
    environment = dict(os.environ, PYTHONWARNINGS="ignore")
    return common.run_measured(command, cwd=bundle, env=environment)


def test_accuracy(model_file: Path, images: torch.Tensor, labels: torch.Tensor, forget_class: int) -> tuple[float, float]:
    """Return the test accuracy of a checkpoint on the forgotten class and on the retained classes."""
    from monai_unlearn.utils import load_checkpoint

    network = common.bundle_network()
    checkpoint = load_checkpoint(model_file)
    network.load_state_dict(checkpoint.get("model", checkpoint) if "model" in checkpoint else checkpoint)
    network.eval()
    with torch.no_grad():
        correct = network(images).argmax(dim=1) == labels
    forget = labels == forget_class
    return float(correct[forget].float().mean()), float(correct[~forget].float().mean())


def segmenter_runs(args: argparse.Namespace, work: Path) -> tuple[common.Table, dict[str, Any], list[str]]:
    """Train, retrain without the forget cases and revise the hippocampus bundle; return the table, setup and notes.

    Raises:
        FileNotFoundError: when the hippocampus bundle is not in the repository.
    """
    if not (SEGMENTER_BUNDLE / "configs" / "forget_cases.json").is_file():
        raise FileNotFoundError(
            f"The hippocampus segmentation bundle was not found at {SEGMENTER_BUNDLE}; --model segmenter needs it."
        )
    training_overrides = SMALL_TRAINING if args.small else []
    runs: dict[str, dict[str, Any]] = {}

    # 1. The original model, trained here or taken from a bundle trained by its train.json.
    if args.trained_bundle:
        trained = Path(args.trained_bundle).resolve()
        data = (trained / "data").resolve()
        bundle = copy_bundle(work / "bundle", data, SEGMENTER_BUNDLE)
        (bundle / "models").mkdir()
        shutil.copy2(trained / "models" / "model.pt", bundle / "models" / "model.pt")
        if (trained / "models" / "training_time.json").is_file():
            shutil.copy2(trained / "models" / "training_time.json", bundle / "models" / "training_time.json")
    else:
        data = work / "data"
        if data.exists():
            shutil.rmtree(data)
        preparation = [sys.executable, str(SEGMENTER_BUNDLE / "scripts" / "prepare_data.py"), "--output-dir", str(data)]
        if args.small:
            preparation.append("--small")
        if args.data_dir:
            preparation += ["--data-dir", args.data_dir]
        common.run_measured(preparation, cwd=work)
        bundle = copy_bundle(work / "bundle", data, SEGMENTER_BUNDLE)
        result = bundle_run(bundle, ["configs/train.json"], training_overrides)
        record = json.loads((bundle / "models" / "training_time.json").read_text())
        runs["original training (train.json, all training cases)"] = {"result": result, "record": record}

    # 2. Retraining on the retain cases (the bundle's retrain oracle), written to models/oracle_cases/.
    configs = ["configs/train.json", "configs/unlearn.json", "configs/forget_cases.json"]
    result = bundle_run(bundle, [*configs, "configs/oracle.json"], training_overrides)
    record = json.loads((bundle / "models" / f"oracle_{SEGMENTER_FORGET}" / "training_time.json").read_text())
    runs["retraining (train.json on the retain cases, oracle.json)"] = {"result": result, "record": record}

    # 3. The revision, in the same bundle, so that its report evaluates the oracle beside the original.
    result = bundle_run(bundle, configs, [])
    report = json.loads((bundle / "eval" / f"unlearning_{SEGMENTER_FORGET}" / "unlearning_report.json").read_text())
    timing = report["timing"]
    runs["revision: unlearn.json + forget_cases.json (psg_retain)"] = {
        "result": result,
        "record": {"wall_time_seconds": timing["revision_seconds"], "process_time_seconds": timing.get("revision_process_seconds")},
    }

    models = report["segmentation"]["models"]
    dice = {
        "original training (train.json, all training cases)": models.get("original"),
        "retraining (train.json on the retain cases, oracle.json)": models.get("oracle"),
        "revision: unlearn.json + forget_cases.json (psg_retain)": models.get("revised"),
    }
    reference = runs["retraining (train.json on the retain cases, oracle.json)"]
    reference_cpu = reference["record"].get("process_time_seconds")
    rows = []
    for name, run in runs.items():
        result, record = run["result"], run["record"]
        cpu = record.get("process_time_seconds")
        evaluated = dice.get(name) or {}
        rows.append([
            name,
            result.wall_seconds,
            record["wall_time_seconds"],
            cpu,
            result.peak_rss_bytes / 2**20,
            reference["result"].wall_seconds / result.wall_seconds,
            reference["record"]["wall_time_seconds"] / record["wall_time_seconds"],
            reference_cpu / cpu if cpu and reference_cpu else None,
            result.peak_rss_bytes / reference["result"].peak_rss_bytes,
            evaluated.get("forget_mean_dice"),
            evaluated.get("held_out_mean_dice"),
        ])  # fmt: skip
    columns = [
        "run",
        "process wall time, s",
        "engine time, s",
        "engine CPU time, s",
        "peak RSS, MiB",
        "speed-up over retraining (process)",
        "speed-up over retraining (engine)",
        "speed-up over retraining (engine CPU)",
        "peak RSS ratio to retraining",
        "mean Dice, forget cases",
        "mean Dice, held-out test cases",
    ]
    table = common.Table("Case forgetting on the hippocampus segmenter", columns, rows)
    datalist = json.loads((data / "datalist.json").read_text())
    lines = (data / "deletion_request.txt").read_text().splitlines()
    request = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    extra = {
        "Data": f"MSD Task04 hippocampus, {len(datalist['training'])} training cases, {len(request)} of them in the "
        f"deletion request (data/deletion_request.txt); {len(datalist['test'])} held-out test cases",
        "Training recipe": "configs/train.json" + (f" with {' '.join(SMALL_TRAINING)}" if args.small else " as shipped"),
        "Original model": "trained by this run" if not args.trained_bundle else f"taken from {args.trained_bundle}",
        "Threads": f"OMP_NUM_THREADS={args.threads} in every run",
    }
    notes = [
        "The target is a revision at least 20 times faster than retraining for case forgetting on the segmenter. The "
        "engine time compares the training loop of each run (TrainingTimeRecorder for training, the report's "
        "revision clock for the revision); its CPU time moves less than the wall time when other processes share the "
        "cores. The process time adds start-up, caching and, for the revision, the report's evaluations of the "
        "original, the revised model and the oracle.",
        "The Dice columns are the revision report's evaluation of each model: the mean over both hippocampus labels "
        "on the forget cases (members of the training set) and on the held-out test cases.",
    ]
    return table, extra, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--small", action="store_true", help="small dataset, 2 training epochs, only the unlearn.json revision"
    )
    parser.add_argument("--model", choices=["classifier", "segmenter"], default="classifier", help="classifier: class "
                        "forgetting on the modality bundle; segmenter: case forgetting on the hippocampus bundle")
    parser.add_argument("--trained-bundle", default=None, help="a bundle folder of the chosen model already trained by "
                        "its train.json (with data/ and models/model.pt, or models/trained.pt for the classifier): "
                        "skip the original training")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every run (default 1)")
    parser.add_argument("--data-dir", default=None, help="data directory (default: $MONAI_UNLEARN_DATA, ../shared/data)")
    parser.add_argument("--work-dir", default="benchmarks/work", help="folder for the bundle copies and images")
    parser.add_argument("--output", default=None, help="results page (default docs/benchmarks/revision_vs_retraining"
                        ".md, _segmenter.md for the segmenter, or WORK_DIR/revision_vs_retraining[_segmenter].small.md "
                        "with --small)")
    args = parser.parse_args()
    started = time.time()
    common.set_threads(args.threads)
    if args.model == "segmenter":
        work = Path(args.work_dir).resolve() / ("segmenter_small" if args.small else "segmenter")
        work.mkdir(parents=True, exist_ok=True)
        table, extra, notes = segmenter_runs(args, work)
        common.print_tables([table])
        output = Path(args.output) if args.output else (
            Path(args.work_dir) / "revision_vs_retraining_segmenter.small.md" if args.small
            else common.RESULTS_DIR / "revision_vs_retraining_segmenter.md"
        )
        page = common.write_results_page(
            output,
            "Revision against retraining: case forgetting on the hippocampus segmenter",
            "Wall time and peak memory of revising the hippocampus segmentation bundle so that it forgets the cases "
            "of a deletion request, against retraining it with its own train.json on the retain cases (the bundle's "
            "retrain oracle), measured one after the other in one run (see `benchmarks/revision_vs_retraining.py`).",
            [table],
            notes,
            started,
            extra,
        )
        print(f"Wrote {page}")
        return
    work = Path(args.work_dir).resolve() / ("retraining_small" if args.small else "retraining")
    work.mkdir(parents=True, exist_ok=True)
    training_overrides = SMALL_TRAINING if args.small else []
    forget_rule = json.loads((common.MODALITY_BUNDLE / "configs" / "unlearn.json").read_text())["forget_rule"]
    forget_class = 1  # the class of "label in {1}", the rule of unlearn.json
    runs: dict[str, dict[str, Any]] = {}

    # 1. The original model.
    if args.trained_bundle:
        trained = Path(args.trained_bundle).resolve()
        data = (trained / "data").resolve()
        checkpoint = trained / "models" / ("trained.pt" if (trained / "models" / "trained.pt").is_file() else "model.pt")
        original = copy_bundle(work / "original", data)
        (original / "models").mkdir()
        shutil.copy2(checkpoint, original / "models" / "model.pt")
        if (trained / "models" / "training_time.json").is_file():
            shutil.copy2(trained / "models" / "training_time.json", original / "models" / "training_time.json")
    else:
        data = common.prepare_modality_data(args.work_dir, args.small, args.data_dir).parent
        original = copy_bundle(work / "original", data)
        result = bundle_run(original, ["configs/train.json"], training_overrides)
        runs["original training (train.json, whole training set)"] = {
            "result": result,
            "engine": json.loads((original / "models" / "training_time.json").read_text())["wall_time_seconds"],
            "model": original / "models" / "model.pt",
        }
    trained_weights = work / "trained.pt"
    shutil.copy2(original / "models" / "model.pt", trained_weights)

    # 2. Retraining on the retain set with the same recipe (the retrain oracle).
    retrain = copy_bundle(work / "retrain", retain_data(data, work / "retain_data", forget_rule))
    result = bundle_run(retrain, ["configs/train.json"], training_overrides)
    runs["retraining (train.json, retain set only)"] = {
        "result": result,
        "engine": json.loads((retrain / "models" / "training_time.json").read_text())["wall_time_seconds"],
        "model": retrain / "models" / "model.pt",
    }

    # 3. Revisions of the original model.
    revisions = {
        "revision: unlearn.json (flag mode, psg_retain)": (["configs/train.json", "configs/unlearn.json"], []),
        "revision: + unlearn_paired.json (paired, psg_retain)": (
            ["configs/train.json", "configs/unlearn.json", "configs/unlearn_paired.json"], []
        ),
        "revision: paired, psg (retain term off)": (
            ["configs/train.json", "configs/unlearn.json", "configs/unlearn_paired.json"], ["--unlearn#method", "psg"]
        ),
    }
    if args.small:
        revisions = dict(list(revisions.items())[:1])
    for name, (configs, overrides) in revisions.items():
        bundle = copy_bundle(work / f"revision_{len(runs)}", data)
        (bundle / "models").mkdir()
        shutil.copy2(trained_weights, bundle / "models" / "model.pt")
        result = bundle_run(bundle, configs, overrides)
        report = json.loads((bundle / "eval" / "unlearning" / "unlearning_report.json").read_text())
        runs[name] = {"result": result, "engine": report["timing"]["revision_seconds"], "model": bundle / "models" / "model.pt"}

    # Table.
    datalist = data / "datalist.json"
    test_images, test_labels = common.load_modality_split(datalist, "test")
    reference = runs["retraining (train.json, retain set only)"]
    rows = []
    for name, run in runs.items():
        result: common.ProcessResult = run["result"]
        forget_accuracy, retain_accuracy = test_accuracy(run["model"], test_images, test_labels, forget_class)
        rows.append([
            name,
            result.wall_seconds,
            run["engine"],
            result.peak_rss_bytes / 2**20,
            reference["result"].wall_seconds / result.wall_seconds,
            reference["engine"] / run["engine"],
            result.peak_rss_bytes / reference["result"].peak_rss_bytes,
            forget_accuracy,
            retain_accuracy,
        ])  # fmt: skip
    columns = [
        "run",
        "process wall time, s",
        "engine time, s",
        "peak RSS, MiB",
        "speed-up over retraining (process)",
        "speed-up over retraining (engine)",
        "peak RSS ratio to retraining",
        "test accuracy, forgotten class",
        "test accuracy, retained classes",
    ]
    table = common.Table("Class forgetting on the modality classifier", columns, rows)
    common.print_tables([table])

    training = json.loads(datalist.read_text())["training"]
    output = Path(args.output) if args.output else (
        Path(args.work_dir) / "revision_vs_retraining.small.md" if args.small
        else common.RESULTS_DIR / "revision_vs_retraining.md"
    )
    notes = [
        "The target is a revision at least 50 times faster than retraining for class forgetting on the classifier. "
        "The engine time compares the training loop of each run; the process time adds what every bundle run pays "
        "(Python and MONAI start-up, caching the datasets, and for revisions the report's evaluation before and "
        "after).",
        "Peak RSS is the whole process's resident set (from `os.wait4`), so it includes Python, torch, MONAI and the "
        "cached datasets, which dominate for this small network; `benchmarks/memory.py` isolates the memory of the "
        "steps themselves.",
        "Case forgetting on the hippocampus segmentation bundle has its own page: run this script with "
        "`--model segmenter`.",
    ]
    extra = {
        "Data": f"modality dataset, {len(training)} training images, forget rule `{forget_rule}` "
        f"({sum(1 for e in training if e['label'] == forget_class)} forget samples); test split of {len(test_labels)}",
        "Training recipe": "configs/train.json" + (f" with {' '.join(SMALL_TRAINING)}" if args.small else " as shipped"),
        "Original model": "trained by this run" if not args.trained_bundle else f"taken from {args.trained_bundle}",
        "Threads": f"OMP_NUM_THREADS={args.threads} in every run",
    }
    page = common.write_results_page(
        output,
        "Revision against retraining: class forgetting on the modality classifier",
        "Wall time and peak memory of revising the modality classifier bundle with its unlearning overlays, against "
        "retraining it with its own train.json on the retain set (the retrain oracle), measured one after the other "
        "in one run (see `benchmarks/revision_vs_retraining.py`).",
        [table],
        notes,
        started,
        extra,
    )
    print(f"Wrote {page}")


if __name__ == "__main__":
    main()
