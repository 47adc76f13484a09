# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Sweep the unlearning method's knobs for a bundle and a forget rule, and show the forget/retain trade-off.

Each point of the grid is one revision of the bundle's trained weights with its own config (``train.json`` with the
``unlearn.json`` overlay, plus the point's overrides), run in this process by the bundle's own trainer, network and
loaders. The revised weights are evaluated with one :class:`~monai_unlearn.metrics.EvaluationSuite` (the overlay's
evaluation loaders) beside the original and the retrain oracle. The sweep writes a table (CSV, Markdown, JSON) and a
plot of the forget metric against the retain metric with the Pareto front marked and the oracle as a point.

The original checkpoint is only read (the sweep replaces the overlay's handlers by a ``CheckpointLoader``, so no
``RevisionSaver`` runs). The oracle comes from the oracle cache (:func:`~monai_unlearn.oracle.train_oracle`), which
trains it only when no cached entry matches.

Command line (from the bundle folder)::

    python -m monai_unlearn.steering.sweep --bundle-root . --grid noise_scale=0.0001,0.1 --grid retain_weight=0,1 \
        --oracle auto --output-dir eval/sweep
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from monai_unlearn.audit.bundle_config import merge_bundle_config
from monai_unlearn.engines.unlearning_trainer import unwrap_network
from monai_unlearn.metrics import EvaluationSuite, oracle_gap
from monai_unlearn.utils import atomic_torch_save, load_checkpoint, state_dict_layout

from .pareto import forget_objective, pareto_front
from .sweep_output import SweepResult, as_number, plot_sweep, write_tables

__all__ = [
    "KNOB_KEYS",
    "DEFAULT_CONFIG_FILES",
    "EVALUATION_LOADER_KEYS",
    "SweepResult",
    "evaluation_suite_from_config",
    "expand_grid",
    "load_bundle_parser",
    "run_sweep",
    "plot_sweep",
    "main",
]

logger = logging.getLogger(__name__)

DEFAULT_CONFIG_FILES = ("configs/train.json", "configs/unlearn.json")

#: Config key of each knob in the ``unlearn.json`` overlay. Any other knob name containing ``#`` is used as a config
#: key itself (for example ``train#dataloader#batch_size``).
KNOB_KEYS: dict[str, str] = {
    **{
        name: f"unlearn#method_kwargs#{name}"
        for name in (
            "epsilon",
            "noise",
            "noise_scale",
            "closeness",
            "closeness_schedule",
            "closeness_rate",
            "retain_weight",
            "retain_target",
            "steps",
            "step_size",
            "step_size_schedule",
            "soft_targets",
            "top_k",
            "temperature",
            "early_stop",
        )
    },
    "passes": "unlearn#passes",
    "learning_rate": "unlearn#learning_rate",
    "method": "unlearn#method",
    "batchnorm": "unlearn#batchnorm",
    "seed": "unlearn#seed",
}

#: Config keys of the evaluation loaders of the ``unlearn.json`` overlay, by split.
EVALUATION_LOADER_KEYS = {"train": "unlearn#train_evaluation_loader", "test": "unlearn#test_loader"}

#: The attacks whose values enter the default mean gap to the oracle.
DEFAULT_ATTACKS = ("loss_threshold", "confidence_svc")


def knob_key(knob: str) -> str:
    """Return the config key of ``knob``.

    Raises:
        ValueError: for a name that is neither a known knob nor a config key.
    """
    if knob in KNOB_KEYS:
        return KNOB_KEYS[knob]
    if "#" in knob:
        return knob
    raise ValueError(f"Unknown sweep knob {knob!r}: expected one of {sorted(KNOB_KEYS)} or a config key with '#'.")


def expand_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Return every combination of the grid's values, in the order of the grid's knobs, as knob-to-value dicts.

    Raises:
        ValueError: for an unknown knob or a knob without values.
    """
    for knob, values in grid.items():
        knob_key(knob)
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
            raise ValueError(f"Sweep knob {knob!r} needs a non-empty list of values, got {values!r}.")
    names = list(grid)
    return [dict(zip(names, combination)) for combination in itertools.product(*(grid[name] for name in names))]


def load_bundle_parser(bundle_root: Path, config_files: Sequence[str], overrides: Mapping[str, Any]) -> Any:
    """Return a ``ConfigParser`` of the merged config files with ``bundle_root`` set to the bundle's absolute path."""
    from monai.bundle import ConfigParser

    content = merge_bundle_config(list(config_files), base_dir=bundle_root)
    parser = ConfigParser(config=content)
    parser.update({"bundle_root": str(bundle_root), **overrides})
    return parser


def _get(parser: Any, key: str, default: Any = None) -> Any:
    return parser.get_parsed_content(key) if key in parser else default


def evaluation_suite_from_config(
    parser: Any,
    attacks: Sequence[str] = ("loss_threshold", "confidence_svc"),
    attack_seed: int = 0,
    loader_keys: Mapping[str, str] | None = None,
    suite_settings: Mapping[str, Any] | None = None,
) -> EvaluationSuite:
    """Return the suite from the overlay's evaluation loaders and the metrics handler's task settings.

    ``suite_settings`` (for example ``evaluate_fn`` and ``metric`` of a segmentation task) take precedence over the
    settings read from ``unlearn#metrics_handler``.
    """
    loaders = {}
    for split, key in (loader_keys or EVALUATION_LOADER_KEYS).items():
        if key not in parser:
            raise KeyError(
                f"The bundle config has no evaluation loader {key!r} for the {split!r} split. Add the evaluation "
                "loaders of configs/unlearn.json to the overlay (see docs/evaluation.md), or pass loader_keys."
            )
        loaders[split] = parser.get_parsed_content(key)
    settings: dict[str, Any] = {}
    for name in ("evaluate_fn", "metric", "prepare_batch", "forget_key"):
        key = f"unlearn#metrics_handler#{name}"
        if key in parser:
            settings[name] = parser.get_parsed_content(key)
    settings.update(suite_settings or {})
    return EvaluationSuite(
        loaders,
        class_names=_get(parser, "class_names"),
        attacks=tuple(attacks),
        attack_seed=attack_seed,
        **settings,
    )


def _load_weights(network: torch.nn.Module, checkpoint: Path) -> torch.nn.Module:
    weights = load_checkpoint(checkpoint)
    layout = state_dict_layout(weights)
    unwrap_network(network).load_state_dict(weights if layout is None else weights[layout])
    return network


def _checkpoint_loader(checkpoint: Path) -> dict[str, Any]:
    return {
        "_target_": "CheckpointLoader",
        "load_path": str(checkpoint),
        "load_dict": {"model": "@network"},
        "map_location": "@device",
    }


def _run_point(
    bundle_root: Path,
    config_files: Sequence[str],
    overrides: Mapping[str, Any],
    knobs: Mapping[str, Any],
    checkpoint: Path,
    trainer_key: str,
) -> tuple[torch.nn.Module, float]:
    """Revise the checkpoint with one point's settings; return the revised network and the wall time of the run."""
    point_overrides = {knob_key(knob): value for knob, value in knobs.items()}
    point_overrides["unlearn#handlers"] = [_checkpoint_loader(checkpoint)]
    parser = load_bundle_parser(bundle_root, config_files, {**overrides, **point_overrides})
    if "initialize" in parser:
        parser.get_parsed_content("initialize")
    trainer = parser.get_parsed_content(trainer_key)
    start = time.perf_counter()
    trainer.run()
    seconds = time.perf_counter() - start
    return unwrap_network(trainer.network).eval(), seconds


def _row(kind: str, point: int | None, knobs: Mapping[str, Any], metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {"kind": kind, "point": point, **dict(knobs), **{key: value for key, value in metrics.items()}}


def _resolve_oracle(
    oracle: str | os.PathLike | None,
    bundle_root: Path,
    forget_rule: str | None,
    oracle_overrides: Mapping[str, Any] | None,
) -> Path | None:
    if oracle is None or str(oracle) == "none":
        return None
    if str(oracle) == "auto":
        from monai_unlearn.oracle import train_oracle

        result = train_oracle(bundle_root, forget_rule=forget_rule, overrides=dict(oracle_overrides or {}))
        logger.info("%s the retrain oracle %s.", "Reusing" if result.reused else "Trained", result.checkpoint)
        return Path(result.checkpoint)
    path = Path(oracle)
    if not path.is_absolute():
        path = bundle_root / path
    if not path.is_file():
        raise FileNotFoundError(f"Oracle checkpoint {str(path)!r} not found; pass 'auto' to train or reuse it.")
    return path


def run_sweep(
    bundle_root: str | os.PathLike,
    grid: Mapping[str, Sequence[Any]],
    output_dir: str | os.PathLike | None = None,
    config_files: Sequence[str] = DEFAULT_CONFIG_FILES,
    overrides: Mapping[str, Any] | None = None,
    checkpoint: str | os.PathLike | None = None,
    oracle: str | os.PathLike | None = None,
    oracle_overrides: Mapping[str, Any] | None = None,
    attacks: Sequence[str] = DEFAULT_ATTACKS,
    attack_seed: int = 0,
    save_weights: bool = True,
    trainer_key: str = "train#trainer",
    loader_keys: Mapping[str, str] | None = None,
    suite_settings: Mapping[str, Any] | None = None,
) -> SweepResult:
    """Revise a bundle once per grid point and compare every revision with the original and the oracle.

    Args:
        bundle_root: the bundle folder.
        grid: values of each knob (names of :data:`KNOB_KEYS`, or config keys); every combination is one point.
        output_dir: folder of the table, plot and weights; None uses ``<bundle>/eval/sweep``.
        config_files: the bundle's training config and the unlearning overlay, merged left to right.
        overrides: config overrides applied to every point (for example ``{"forget_rule": "label in {2}"}``).
        checkpoint: the trained original's weights; None uses the config's ``unlearn#checkpoint``. Only read.
        oracle: ``"auto"`` (the cached retrain oracle of :func:`~monai_unlearn.oracle.train_oracle`, trained when
            missing), a checkpoint path, or None for no oracle.
        oracle_overrides: config overrides of the oracle's training (for example ``{"num_epochs": 5}``).
        attacks: membership inference attacks to run for every model (the default ones enter the mean gap).
        attack_seed: seed of the attacks.
        save_weights: write each point's revised weights to ``<output_dir>/weights/point_<i>.pt``.
        trainer_key: config key of the unlearning trainer (``"trainer"`` in a flat layout).
        loader_keys: config keys of the evaluation loaders by split (``train`` and ``test``); None uses
            :data:`EVALUATION_LOADER_KEYS`. NOTE: overlays written by ``monai-unlearn revise`` define no evaluation
            loaders, so add them (as ``configs/unlearn.json`` does) before sweeping such a bundle.
        suite_settings: settings of the :class:`~monai_unlearn.metrics.EvaluationSuite`, such as ``evaluate_fn`` and
            ``metric="mean_dice"`` for a segmentation bundle whose overlay has no ``unlearn#metrics_handler``.

    Returns:
        The :class:`SweepResult`.

    Raises:
        ValueError: for an unknown knob or an empty grid.
        FileNotFoundError: when the bundle's configs, the checkpoint or the oracle checkpoint do not exist.
        KeyError: when the config lacks the overlay's evaluation loaders.
    """
    root = Path(bundle_root).resolve()
    points = expand_grid(grid)
    if not points:
        raise ValueError("The sweep grid is empty; give at least one knob with values.")
    overrides = dict(overrides or {})
    base = load_bundle_parser(root, config_files, overrides)
    if checkpoint is None:
        checkpoint = _get(base, "unlearn#checkpoint")
        if checkpoint is None:
            raise KeyError("The config has no 'unlearn#checkpoint'; pass the trained weights as checkpoint.")
    checkpoint_path = Path(checkpoint) if Path(checkpoint).is_absolute() else root / checkpoint
    if not checkpoint_path.is_file():
        raise FileNotFoundError(f"Original checkpoint {str(checkpoint_path)!r} not found; train the bundle first.")
    output = Path(output_dir) if output_dir is not None else root / "eval" / "sweep"
    output.mkdir(parents=True, exist_ok=True)
    forget_rule = overrides.get("forget_rule")
    oracle_path = _resolve_oracle(oracle, root, forget_rule, oracle_overrides)

    suite = evaluation_suite_from_config(base, attacks, attack_seed, loader_keys, suite_settings)
    device = _get(base, "device", "cpu")
    network = base.get_parsed_content("network")
    metric = suite.metric
    logger.info("Sweep of %d points over %s on %s.", len(points), list(grid), checkpoint_path)

    original_metrics = suite.evaluate(_load_weights(network, checkpoint_path), device, "original").metrics
    rows = [_row("original", None, {}, original_metrics)]
    if oracle_path is not None:
        oracle_metrics = suite.evaluate(_load_weights(network, oracle_path), device, "oracle").metrics
        rows.append(_row("oracle", None, {}, oracle_metrics))
    weights: dict[int, Path] = {}
    for index, knobs in enumerate(points):
        logger.info("Sweep point %d/%d: %s", index + 1, len(points), knobs)
        try:
            revised, seconds = _run_point(root, config_files, overrides, knobs, checkpoint_path, trainer_key)
        except (ValueError, KeyError, TypeError, RuntimeError) as error:
            # The bundle parser wraps a component's error in a RuntimeError, so report the innermost error.
            cause = error
            while cause.__cause__ is not None:
                cause = cause.__cause__
            raise ValueError(f"Sweep point {index} with {knobs} failed: {cause}") from error
        metrics = suite.evaluate(revised, device, f"point {index}").metrics
        row = _row("sweep", index, knobs, metrics)
        row["seconds"] = seconds
        if save_weights:
            weights[index] = atomic_torch_save(revised.state_dict(), output / "weights" / f"point_{index:03d}.pt")
            row["weights"] = str(weights[index])
        rows.append(row)
        logger.info(
            "Sweep point %d: forget_train_%s %.4f, retain_%s %.4f, %.1f s.",
            index,
            metric,
            as_number(metrics.get(f"forget_train_{metric}")),
            metric,
            as_number(metrics.get(f"retain_{metric}")),
            seconds,
        )

    _annotate(rows, metric, suite.gap_metrics)
    result = SweepResult(
        rows=rows, knobs=list(grid), metric=metric, weights=weights, checkpoint=checkpoint_path, oracle=oracle_path
    )
    result.files = write_tables(result, output)
    result.files["png"] = plot_sweep(result, output / "sweep.png")
    logger.info("Sweep done: %s", ", ".join(str(path) for path in result.files.values()))
    return result


def _annotate(rows: list[dict[str, Any]], metric: str, gap_metrics: Sequence[str]) -> None:
    """Add the mean gap, the forget objective and the Pareto flag to every row."""
    oracle = next((row for row in rows if row["kind"] == "oracle"), None)
    oracle_forget = as_number(oracle[f"forget_train_{metric}"]) if oracle is not None else None
    if oracle_forget is not None and math.isnan(oracle_forget):
        oracle_forget = None
    for row in rows:
        row["mean_gap"] = oracle_gap(row, oracle, gap_metrics)["mean"] if oracle is not None else None
        row["forget_objective"] = forget_objective(as_number(row.get(f"forget_train_{metric}")), oracle_forget)
        row["pareto"] = False
    points = [row for row in rows if row["kind"] == "sweep"]
    forget = [row["forget_objective"] for row in points]
    retain = [as_number(row.get(f"retain_{metric}")) for row in points]
    flags = pareto_front(forget, retain)
    for row, flag in zip(points, flags):
        row["pareto"] = flag


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _parse_pairs(items: Sequence[str], option: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise SystemExit(f"Invalid {option} {item!r}: expected KEY=VALUE, for example noise_scale=0.0001,0.1.")
        pairs[key] = value
    return pairs


def build_parser() -> argparse.ArgumentParser:
    """Return the command line parser of the sweep."""
    parser = argparse.ArgumentParser(
        prog="python -m monai_unlearn.steering.sweep",
        description="Revise a bundle once per point of a grid over the method's knobs and write a table and a plot "
        "of forget against retain metric with the Pareto front and the oracle.",
    )
    parser.add_argument("--bundle-root", default=".", help="the bundle folder (default: the current directory)")
    parser.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KNOB=V1,V2",
        help=f"values of a knob, comma-separated, each read as JSON or else as text; repeatable. Knobs: "
        f"{', '.join(sorted(KNOB_KEYS))}, or any config key with '#'",
    )
    parser.add_argument(
        "--config-file",
        action="append",
        default=None,
        help=f"a config file relative to the bundle root, repeatable (default: {' '.join(DEFAULT_CONFIG_FILES)})",
    )
    parser.add_argument(
        "--override", action="append", default=[], metavar="KEY=JSON", help="a config override for every point"
    )
    parser.add_argument(
        "--checkpoint", default=None, help="the trained original (default: the config's unlearn#checkpoint)"
    )
    parser.add_argument(
        "--oracle", default="none", help="'auto' (the cached retrain oracle, trained when missing), a checkpoint path, "
        "or 'none' (default)"
    )
    parser.add_argument(
        "--oracle-override", action="append", default=[], metavar="KEY=JSON", help="a config override of the oracle's "
        "training, for example num_epochs=5; repeatable"
    )
    parser.add_argument("--output-dir", default=None, help="output folder (default: <bundle root>/eval/sweep)")
    parser.add_argument(
        "--attacks", default=",".join(DEFAULT_ATTACKS), help="comma-separated membership inference attacks, or '' for "
        f"none (default: {','.join(DEFAULT_ATTACKS)})"
    )
    parser.add_argument("--no-weights", action="store_true", help="do not save each point's revised weights")
    parser.add_argument(
        "--trainer-key", default="train#trainer", help="config key of the trainer (default: train#trainer)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sweep command line; return the exit status."""
    arguments = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(name)s - %(levelname)s - %(message)s")
    if not arguments.grid:
        raise SystemExit("Give at least one --grid KNOB=V1,V2, for example --grid noise_scale=0.0001,0.1.")
    grid = {
        knob: [_parse_value(value) for value in values.split(",")]
        for knob, values in _parse_pairs(arguments.grid, "--grid").items()
    }
    overrides = {key: _parse_value(value) for key, value in _parse_pairs(arguments.override, "--override").items()}
    oracle_overrides = {
        key: _parse_value(value) for key, value in _parse_pairs(arguments.oracle_override, "--oracle-override").items()
    }
    try:
        result = run_sweep(
            arguments.bundle_root,
            grid,
            output_dir=arguments.output_dir,
            config_files=arguments.config_file or DEFAULT_CONFIG_FILES,
            overrides=overrides,
            checkpoint=arguments.checkpoint,
            oracle=arguments.oracle,
            oracle_overrides=oracle_overrides,
            attacks=[name for name in arguments.attacks.split(",") if name],
            save_weights=not arguments.no_weights,
            trainer_key=arguments.trainer_key,
        )
    except (ValueError, KeyError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(result.files["markdown"].read_text(encoding="utf-8"))
    print(result.files["png"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
