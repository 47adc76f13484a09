# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Combine two runs of a sweep by composition and by interpolation, and compare them with their parents and the oracle.

After :mod:`monai_unlearn.steering.sweep` has revised a bundle once per grid point, this command takes two of the
revised networks. Parent A is the run with the best retain metric, and parent B the run closest to the oracle's
forget level, unless two points are given by index. It builds:

- ``composed``: A's feature extractor with B's head (:func:`~monai_unlearn.steering.compose`);
- ``composed_finetuned``: the same with the head fine-tuned on the retain set;
- ``interpolated``: ``(1 - alpha) * A + alpha * B`` with ``alpha`` chosen on the validation split
  (:func:`~monai_unlearn.steering.choose_alpha`) to reach the forget level at the best retain level.

Every model is evaluated with the overlay's evaluation loaders and attacks, and its mean gap to the oracle is
reported beside the parents', the original's and the oracle's. Command line (from the bundle folder)::

    python -m monai_unlearn.steering.combine --bundle-root . --sweep-dir eval/sweep
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.data import DataLoader, Dataset

from monai_unlearn.utils import atomic_write_json, atomic_write_text

from .composition import compose
from .interpolation import DEFAULT_ALPHAS, choose_alpha, interpolated_network
from .sweep import DEFAULT_ATTACKS, DEFAULT_CONFIG_FILES, evaluation_suite_from_config, load_bundle_parser
from .weights import load_state

__all__ = ["choose_parents", "combine_runs", "main"]

logger = logging.getLogger(__name__)

HEADLINE = (
    "forget_train_{metric}",
    "forget_heldout_{metric}",
    "retain_{metric}",
    "test_{metric}",
    "mia_efficacy",
    "mia_loss_threshold_auc",
)


def _value(row: Mapping[str, Any], key: str) -> float:
    value = row.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def choose_parents(rows: Sequence[Mapping[str, Any]], metric: str = "accuracy") -> tuple[int, int]:
    """Return the sweep points of parent A (best retain metric) and parent B (lowest forget objective, not A).

    Ties in retain go to the lower forget objective, and ties in the forget objective to the higher retain metric.

    Raises:
        ValueError: when the sweep has fewer than two points.
    """
    points = [row for row in rows if row.get("kind") == "sweep"]
    if len(points) < 2:
        raise ValueError(f"Combining runs needs a sweep of at least two points, got {len(points)}.")
    retain_key = f"retain_{metric}"
    best_retain = max(points, key=lambda row: (_value(row, retain_key), -_value(row, "forget_objective")))
    others = [row for row in points if row["point"] != best_retain["point"]]
    best_forget = min(others, key=lambda row: (_value(row, "forget_objective"), -_value(row, retain_key)))
    return int(best_retain["point"]), int(best_forget["point"])


def _validation_loader(parser: Any, datalist_key: str) -> DataLoader:
    entries = parser.get_parsed_content(datalist_key)
    transform = parser.get_parsed_content("unlearn#evaluation_preprocessing")
    return DataLoader(Dataset(entries, transform=transform), batch_size=256, shuffle=False, num_workers=0)


def combine_runs(
    bundle_root: str | os.PathLike,
    sweep_dir: str | os.PathLike,
    extractor_point: int | None = None,
    head_point: int | None = None,
    forget_level: float | None = None,
    forget_tolerance: float = 0.02,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    finetune_epochs: int = 1,
    finetune_learning_rate: float = 1e-4,
    config_files: Sequence[str] = DEFAULT_CONFIG_FILES,
    overrides: Mapping[str, Any] | None = None,
    validation_key: str = "val_datalist",
    attacks: Sequence[str] = DEFAULT_ATTACKS,
    output_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Compose and interpolate two runs of a sweep and compare every model with the oracle.

    Args:
        bundle_root: the bundle folder.
        sweep_dir: the sweep's output folder (``sweep.json`` and ``weights/``).
        extractor_point, head_point: sweep points of parents A and B; None chooses them with :func:`choose_parents`.
        forget_level: the forget level of the alpha choice on the validation split; None uses the oracle's validation
            value plus ``forget_tolerance``.
        forget_tolerance: added to the oracle's value when ``forget_level`` is None.
        alphas: the mixing weights to evaluate.
        finetune_epochs, finetune_learning_rate: the head fine-tune of ``composed_finetuned``.
        config_files, overrides: the bundle's configs and overrides, as given to the sweep.
        validation_key: config key of the validation datalist.
        attacks: membership inference attacks of the comparison.
        output_dir: folder of ``combined.md`` and ``combined.json``; None uses ``sweep_dir``.

    Returns:
        ``{"parents": {...}, "alpha": {...}, "models": {name: metrics}, "gap": {name: mean gap}, "verdict": {...}}``.

    Raises:
        FileNotFoundError: when ``sweep.json``, a point's weights or the oracle are missing.
        ValueError: when the sweep has no oracle, too few points, or the alpha choice fails.
    """
    root = Path(bundle_root).resolve()
    sweep_path = Path(sweep_dir)
    record_path = sweep_path / "sweep.json"
    if not record_path.is_file():
        raise FileNotFoundError(f"{str(record_path)!r} not found; run python -m monai_unlearn.steering.sweep first.")
    record = json.loads(record_path.read_text(encoding="utf-8"))
    if not record.get("oracle"):
        raise ValueError("The sweep ran without an oracle; rerun it with --oracle auto to compare with the oracle.")
    metric = record["metric"]
    rows = record["rows"]
    if extractor_point is None or head_point is None:
        chosen = choose_parents(rows, metric)
        extractor_point = chosen[0] if extractor_point is None else extractor_point
        head_point = chosen[1] if head_point is None else head_point
    weights = {row["point"]: row.get("weights") for row in rows if row["kind"] == "sweep"}
    for point in (extractor_point, head_point):
        if not weights.get(point):
            raise FileNotFoundError(f"The sweep saved no weights for point {point}; rerun it without --no-weights.")

    parser = load_bundle_parser(root, config_files, dict(overrides or {}))
    suite = evaluation_suite_from_config(parser, attacks)
    device = parser.get_parsed_content("device") if "device" in parser else "cpu"
    template = parser.get_parsed_content("network")
    state_a, state_b = load_state(weights[extractor_point]), load_state(weights[head_point])
    oracle_state = load_state(record["oracle"], "oracle")
    original_state = load_state(record["checkpoint"], "checkpoint")

    def network_with(state: Mapping[str, torch.Tensor]) -> torch.nn.Module:
        network = copy.deepcopy(template)
        network.load_state_dict(state)
        return network.eval()

    validation = evaluation_suite_from_config(parser, ())
    validation.loaders = {"validation": _validation_loader(parser, validation_key)}
    validation.train_split = "validation"
    if forget_level is None:
        oracle_validation = validation.evaluate(network_with(oracle_state), device, "oracle", attacks=False)
        forget_level = float(oracle_validation.metrics[f"forget_train_{metric}"]) + forget_tolerance
    logger.info("Parents: A = point %d (extractor), B = point %d (head); forget level %.4f.", extractor_point,
                head_point, forget_level)

    choice = choose_alpha(state_a, state_b, template, validation, forget_level=forget_level, alphas=alphas,
                          device=device)
    finetune_loader = parser.get_parsed_content("train#dataloader")
    models = {
        "original": network_with(original_state),
        "oracle": network_with(oracle_state),
        f"parent A (point {extractor_point})": network_with(state_a),
        f"parent B (point {head_point})": network_with(state_b),
        "composed": compose(state_a, state_b, network=template, device=device),
        "composed_finetuned": compose(
            state_a,
            state_b,
            network=template,
            finetune="head",
            finetune_loader=finetune_loader,
            finetune_epochs=finetune_epochs,
            finetune_learning_rate=finetune_learning_rate,
            device=device,
        ),
        f"interpolated (alpha {choice.alpha:g})": interpolated_network(template, state_a, state_b, choice.alpha),
    }
    evaluations = {name: suite.evaluate(network.to(device), device, name) for name, network in models.items()}
    comparison = suite.compare(evaluations, reference="oracle")
    gaps = {name: comparison["gap"][name]["mean"] for name in comparison["gap"]}
    parent_names = [name for name in models if name.startswith("parent")]
    better_parent = min(gaps[name] for name in parent_names)
    verdict = {
        name: {
            "mean_gap": gaps[name],
            "better_parent_gap": better_parent,
            "at_least_as_close": gaps[name] <= better_parent,
        }
        for name in models
        if name.startswith(("composed", "interpolated"))
    }
    result = {
        "metric": metric,
        "parents": {"A": extractor_point, "B": head_point},
        "forget_level": forget_level,
        "alpha": {"chosen": choice.alpha, "candidates": [
            {key: row[key] for key in ("alpha", "forget", "retain", "reached")} for row in choice.candidates
        ]},
        "models": {name: evaluation.metrics for name, evaluation in evaluations.items()},
        "gap": gaps,
        "gap_metrics": suite.gap_metrics,
        "verdict": verdict,
    }
    output = Path(output_dir) if output_dir is not None else sweep_path
    atomic_write_json(output / "combined.json", result)
    atomic_write_text(output / "combined.md", _markdown(result))
    return result


def _markdown(result: Mapping[str, Any]) -> str:
    metric = result["metric"]
    columns = [column.format(metric=metric) for column in HEADLINE]
    lines = [
        "| model | " + " | ".join(columns) + " | mean gap to oracle |",
        "| --- |" + " --- |" * (len(columns) + 1),
    ]
    for name, metrics in result["models"].items():
        values = [metrics.get(column) for column in columns]
        cells = ["" if value is None else f"{value:.3f}" for value in values]
        gap = result["gap"].get(name)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {'' if gap is None else f'{gap:.4f}'} |")
    verdicts = [
        f"- {name}: mean gap {entry['mean_gap']:.4f} against {entry['better_parent_gap']:.4f} for the better parent, "
        f"{'at least as close to the oracle' if entry['at_least_as_close'] else 'further from the oracle'}."
        for name, entry in result["verdict"].items()
    ]
    alphas = ", ".join(
        f"{row['alpha']:g}: {row['forget']:.3f}/{row['retain']:.3f}" for row in result["alpha"]["candidates"]
    )
    return (
        f"Parents: A = sweep point {result['parents']['A']} (extractor), B = sweep point {result['parents']['B']} "
        f"(head). Alpha chosen on the validation split for forget_train_{metric} <= {result['forget_level']:.3f}: "
        f"{result['alpha']['chosen']:g} (alpha: forget/retain on validation = {alphas}).\n\n"
        + "\n".join(lines)
        + "\n\n"
        + "\n".join(verdicts)
        + "\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m monai_unlearn.steering.combine",
        description="Compose and interpolate two runs of a sweep and compare them with their parents and the oracle.",
    )
    parser.add_argument("--bundle-root", default=".", help="the bundle folder (default: the current directory)")
    parser.add_argument("--sweep-dir", default=None, help="the sweep's output folder (default: <bundle>/eval/sweep)")
    parser.add_argument(
        "--extractor-point", type=int, default=None, help="sweep point of parent A (default: best retain)"
    )
    parser.add_argument("--head-point", type=int, default=None, help="sweep point of parent B (default: best forget)")
    parser.add_argument(
        "--forget-level", type=float, default=None, help="forget level of the alpha choice (default: the oracle's "
        "validation value plus --forget-tolerance)"
    )
    parser.add_argument(
        "--forget-tolerance", type=float, default=0.02, help="added to the oracle's value (default 0.02)"
    )
    parser.add_argument("--finetune-epochs", type=int, default=1, help="passes of the head fine-tune (default 1)")
    parser.add_argument(
        "--override", action="append", default=[], metavar="KEY=JSON", help="a config override, as given to the sweep"
    )
    parser.add_argument(
        "--output-dir", default=None, help="folder of combined.md and combined.json (default: --sweep-dir)"
    )
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(name)s - %(levelname)s - %(message)s")
    overrides = {}
    for item in arguments.override:
        key, _, value = item.partition("=")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    sweep_dir = arguments.sweep_dir or str(Path(arguments.bundle_root) / "eval" / "sweep")
    try:
        combine_runs(
            arguments.bundle_root,
            sweep_dir,
            extractor_point=arguments.extractor_point,
            head_point=arguments.head_point,
            forget_level=arguments.forget_level,
            forget_tolerance=arguments.forget_tolerance,
            finetune_epochs=arguments.finetune_epochs,
            overrides=overrides,
            output_dir=arguments.output_dir,
        )
    except (ValueError, KeyError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print((Path(arguments.output_dir or sweep_dir) / "combined.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
