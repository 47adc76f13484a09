# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Unlearning overlays: the config that the bundle CLI merges onto a bundle's training config to revise it.

This module sits before the run, after :mod:`~monai_unlearn.bundle.layout`: given the layout of a bundle and a
:class:`ForgetRequest`, :func:`build_overlay` writes the keys that turn the bundle's training run into a revision.
The overlay swaps the trainer's ``_target_`` for :class:`~monai_unlearn.engines.UnlearningTrainer`, and every other
trainer argument stays as the bundle defines it. It appends :class:`~monai_unlearn.transforms.TagForgetd` to the
training transform list, sets the pass budget and, on request, the optimizer's learning rate, and replaces the
trainer's handlers with the revision handlers. The same request gives equivalent overlays for the model-zoo layout
and the flat layout, and the overlay is written as JSON or YAML to match the bundle.

The bundle's own training handlers are replaced, not extended: they usually run the validator, whose
``CheckpointSaver`` would write ``models/model.pt`` in the middle of a revision, and may restart training from a
checkpoint.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from monai_unlearn.engines import BATCHNORM_POLICIES
from monai_unlearn.methods import create_method
from monai_unlearn.transforms import parse_rule
from monai_unlearn.utils import atomic_write_text

from .layout import BundleLayout, BundleLayoutError, get_config_item, has_config_item, normalize_id

__all__ = [
    "ForgetRequest",
    "OVERLAY_REQUEST_KEY",
    "REVISE_RUN_ID",
    "build_overlay",
    "check_overlay",
    "dump_config",
    "write_overlay",
]

#: Top-level key of a generated overlay that records the request and the layout it was built for.
OVERLAY_REQUEST_KEY = "unlearn_request"
#: Id of the expression list that a generated overlay adds to run the revision (``monai.bundle run revise``).
REVISE_RUN_ID = "revise"
VERSION_BUMPS = ("patch", "minor")
_UNLEARNING_TRAINER = "monai_unlearn.engines.UnlearningTrainer"


@dataclass
class ForgetRequest:
    """Forget request: what to forget and how, the part of a revision that does not depend on the bundle's layout.

    Attributes:
        rule: forget rule expression over datalist fields, for example ``"label in {1}"`` or
            ``"Manufacturer == 'SIEMENS'"`` (see :func:`~monai_unlearn.transforms.parse_rule`).
        method: registered unlearning method (``"psg"``, ``"psg_retain"``, ``"boundary_shrink"``, ...).
        method_kwargs: settings of the method, for example ``{"epsilon": 0.1, "box": [0.0, 1.0]}``.
        passes: passes over the forget set (the trainer's ``max_epochs``).
        learning_rate: learning rate set on the bundle's optimizer; None keeps the bundle's value.
        batchnorm: BatchNorm policy of the trainer (``"train"``, ``"eval"`` or ``"frozen"``).
        seed: seed of the trainer's generator and of ``monai.utils.set_determinism`` for the revision.
        forget_key: key of the per-sample forget flag.
    """

    rule: str
    method: str = "psg"
    method_kwargs: dict[str, Any] = field(default_factory=dict)
    passes: int = 1
    learning_rate: float | None = None
    batchnorm: str = "eval"
    seed: int = 0
    forget_key: str = "forget"

    def validate(self) -> ForgetRequest:
        """Check every field, build the rule and the method once, and return ``self``.

        Raises:
            ValueError: for an invalid rule, method, method setting, pass count, learning rate, BatchNorm policy or
                seed; the message names the value.
        """
        parse_rule(self.rule)
        if isinstance(self.passes, bool) or not isinstance(self.passes, int) or self.passes < 1:
            raise ValueError(f"Invalid passes {self.passes!r}: it must be an integer >= 1 (passes over the forget set).")
        if self.learning_rate is not None:
            rate = self.learning_rate
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not math.isfinite(rate) or rate <= 0:
                raise ValueError(f"Invalid learning_rate {rate!r}: it must be a finite number > 0, or None.")
        if self.batchnorm not in BATCHNORM_POLICIES:
            raise ValueError(f"Invalid batchnorm policy {self.batchnorm!r}: expected one of {BATCHNORM_POLICIES}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"Invalid seed {self.seed!r}: it must be an integer >= 0.")
        if not isinstance(self.method_kwargs, Mapping):
            raise ValueError(f"method_kwargs must be a mapping, got {type(self.method_kwargs).__name__}.")
        json.dumps(dict(self.method_kwargs))  # the settings go into a config file
        create_method(self.method, **dict(self.method_kwargs))
        return self

    def to_dict(self) -> dict[str, Any]:
        """Return the request as plain values."""
        return asdict(self)


def _bundle_path(path: str) -> str:
    """Return a config value for a path relative to the bundle root (or the absolute path itself)."""
    if os.path.isabs(path):
        return path
    return f"$@bundle_root + '/{Path(path).as_posix()}'"


def _tag_transform(request: ForgetRequest, datalist: str | None) -> dict[str, Any]:
    tag: dict[str, Any] = {
        "_target_": "monai_unlearn.transforms.TagForgetd",
        "rule": "@unlearn#forget_rule",
        "forget_key": "@unlearn#forget_key",
    }
    if datalist is not None:
        tag["datalist"] = datalist
    return tag


def build_overlay(
    config: dict,
    layout: BundleLayout,
    request: ForgetRequest,
    checkpoint: str = "models/model.pt",
    metadata_file: str = "configs/metadata.json",
    report: bool = True,
    report_dir: str = "eval/unlearning",
    work_dir: str = "models/revision_checkpoints",
    checkpoint_interval: int = 0,
    version_bump: str = "patch",
    new_version: str | None = None,
) -> dict[str, Any]:
    """Build the overlay that revises a bundle with ``request``.

    Paths are relative to the bundle root (``@bundle_root``) unless absolute.

    Args:
        config: the bundle's merged training config (raw, as from :func:`~monai_unlearn.bundle.load_bundle_config`).
        layout: its layout, from :func:`~monai_unlearn.bundle.detect_layout`.
        request: what to forget and how.
        checkpoint: the checkpoint that is revised in place.
        metadata_file: the bundle's ``metadata.json``, whose version is bumped when the revision completes.
        report: add :class:`~monai_unlearn.handlers.UnlearningReport` over the bundle's validation loader (a
            classification report); it is skipped when the bundle has no validation loader.
        report_dir: folder of the report.
        work_dir: folder of the resume checkpoints.
        checkpoint_interval: save trainer, network and optimizer every this many iterations into ``work_dir``, so an
            interrupted revision can resume (``unlearn#resume_from``); 0 saves none.
        version_bump: ``"patch"`` or ``"minor"``.
        new_version: explicit new version instead of a bump.

    Returns:
        the overlay as a dictionary, ready for :func:`write_overlay`.

    Raises:
        ValueError: for an invalid request or option.
        BundleLayoutError: when the bundle's optimizer is an expression and a learning rate was requested.
    """
    request.validate()
    if version_bump not in VERSION_BUMPS:
        raise ValueError(f"Invalid version_bump {version_bump!r}: expected one of {VERSION_BUMPS}.")
    if isinstance(checkpoint_interval, bool) or not isinstance(checkpoint_interval, int) or checkpoint_interval < 0:
        raise ValueError(f"Invalid checkpoint_interval {checkpoint_interval!r}: it must be an integer >= 0.")
    trainer = layout.trainer_id
    if request.learning_rate is not None and layout.optimizer_id is None:
        raise BundleLayoutError(
            f"The trainer's optimizer ({trainer}#optimizer) is an expression, so its learning rate cannot be set by "
            "an overlay. Revise without a learning rate (the bundle's rate is kept) or define the optimizer as a "
            "component with '_target_' and 'lr'."
        )

    unlearn: dict[str, Any] = {
        "forget_rule": request.rule,
        "forget_key": request.forget_key,
        "method": request.method,
        "method_kwargs": dict(request.method_kwargs),
        "passes": request.passes,
        "batchnorm": request.batchnorm,
        "seed": request.seed,
        "checkpoint": _bundle_path(checkpoint),
        "metadata_file": _bundle_path(metadata_file),
        "report_dir": _bundle_path(report_dir),
        "work_dir": _bundle_path(work_dir),
        "checkpoint_interval": checkpoint_interval,
        "resume_from": None,
        "version_bump": version_bump,
        "new_version": new_version,
    }
    if request.learning_rate is not None:
        unlearn["learning_rate"] = request.learning_rate

    network, device, optimizer = f"@{trainer}#network", f"@{trainer}#device", f"@{trainer}#optimizer"
    datalist = f"@{layout.datalist_id}" if layout.datalist_id else None
    unlearn["load_original"] = {
        "_target_": "CheckpointLoader",
        "load_path": "@unlearn#checkpoint",
        "load_dict": {"model": network},
        "map_location": device,
    }
    unlearn["revision_saver"] = {
        "_target_": "monai_unlearn.handlers.RevisionSaver",
        "checkpoint_path": "@unlearn#checkpoint",
    }
    handlers = ["@unlearn#load_original", "@unlearn#revision_saver"]
    # NOTE: the generated report evaluates a classifier. A segmentation bundle needs its own overlay with
    # SegmentationUnlearningReport (see bundles/hippocampus_segmentation/configs/unlearn.json), or --no-report.
    with_report = report and layout.validation_loader_id is not None
    if with_report:
        unlearn["report"] = {
            "_target_": "monai_unlearn.handlers.UnlearningReport",
            "output_dir": "@unlearn#report_dir",
            "loaders": {"validation": f"@{layout.validation_loader_id}"},
            "forget_key": "@unlearn#forget_key",
            "forget_rule": "@unlearn#forget_rule",
        }
        if "class_names" in config:
            unlearn["report"]["class_names"] = "@class_names"
        handlers.append("@unlearn#report")
    unlearn["stats"] = {
        "_target_": "StatsHandler",
        "tag_name": "unlearning_loss",
        "iteration_log": False,
        "output_transform": "$monai.handlers.from_engine(['loss'], first=True)",
    }
    unlearn["metadata_updater"] = {
        "_target_": "monai_unlearn.handlers.BundleMetadataUpdater",
        "metadata_file": "@unlearn#metadata_file",
        "forget_rule": "@unlearn#forget_rule",
        "passes": "@unlearn#passes",
        "seed": "@unlearn#seed",
        "version_bump": "@unlearn#version_bump",
        "new_version": "@unlearn#new_version",
    }
    if datalist is not None:
        unlearn["metadata_updater"]["datalist"] = datalist
    if request.learning_rate is not None:
        unlearn["metadata_updater"]["learning_rate"] = "@unlearn#learning_rate"
    if with_report:
        unlearn["metadata_updater"]["report"] = "@unlearn#report"
    handlers += ["@unlearn#stats", "@unlearn#metadata_updater"]
    unlearn["handlers"] = handlers

    # The resume loader and the interval saver refer to the trainer itself, so they cannot be in its own handler list
    # because the config would refer to itself. The run expressions attach them to the built trainer instead.
    state = {"trainer": f"@{trainer}", "network": network, "optimizer": optimizer}
    unlearn["resume_loader"] = {
        "_target_": "CheckpointLoader",
        "_disabled_": "$@unlearn#resume_from is None",
        "load_path": "@unlearn#resume_from",
        "load_dict": state,
        "map_location": device,
    }
    unlearn["checkpoint_saver"] = {
        "_target_": "CheckpointSaver",
        "_disabled_": "$@unlearn#checkpoint_interval < 1",
        "save_dir": "@unlearn#work_dir",
        "save_dict": state,
        "file_prefix": "revision",
        "epoch_level": False,
        "save_interval": "$max(1, @unlearn#checkpoint_interval)",
        "n_saved": 2,
    }

    overlay: dict[str, Any] = {
        OVERLAY_REQUEST_KEY: {**request.to_dict(), "layout": layout.to_dict()},
        "+imports": ["$import monai_unlearn"],
        "unlearn": unlearn,
        f"+{layout.transforms_id}": [_tag_transform(request, datalist)],
    }
    if (
        with_report
        and layout.validation_transforms_id is not None
        and layout.validation_transforms_id != layout.transforms_id
    ):
        overlay[f"+{layout.validation_transforms_id}"] = [_tag_transform(request, None)]
    if "bundle_root" not in config:
        overlay["bundle_root"] = "."
    overlay.update(
        {
            f"{trainer}#_target_": _UNLEARNING_TRAINER,
            f"{trainer}#max_epochs": "@unlearn#passes",
            f"{trainer}#method": "@unlearn#method",
            f"{trainer}#method_kwargs": "@unlearn#method_kwargs",
            f"{trainer}#batchnorm": "@unlearn#batchnorm",
            f"{trainer}#seed": "@unlearn#seed",
            f"{trainer}#forget_key": "@unlearn#forget_key",
            f"{trainer}#train_handlers": "@unlearn#handlers",
        }
    )
    if request.learning_rate is not None:
        overlay[f"{layout.optimizer_id}#lr"] = "@unlearn#learning_rate"
    # The revision seeds MONAI's global random state itself, after the bundle's own initialisation.
    overlay["+initialize"] = ["$monai.utils.set_determinism(seed=@unlearn#seed)"]
    overlay[REVISE_RUN_ID] = [
        f"$monai_unlearn.bundle.attach_handlers(@{trainer}, [@unlearn#resume_loader, @unlearn#checkpoint_saver])",
        f"$@{trainer}.run()",
    ]
    return overlay


def check_overlay(config: dict, overlay: dict, layout: BundleLayout) -> None:
    """Check that an overlay's ids exist in the bundle and that it replaces the bundle's trainer.

    MONAI merges an overlay key such as ``train#trainer#_target_`` only when ``train#trainer`` exists, and fails with
    a bare ``KeyError`` otherwise. An overlay that sets new top-level ids but misses the trainer would silently train
    the bundle again. Both come from an overlay written for the other layout.

    Raises:
        BundleLayoutError: naming the first key whose parent id the bundle lacks, or saying that no key replaces the
            trainer ``layout.trainer_id``.
    """
    merged: dict[str, Any] = {}
    replaces_trainer = False
    for key, value in overlay.items():
        append = key.startswith("+")
        config_id = normalize_id(key[1:] if append else key)
        parts = config_id.split("#")
        parent = "#".join(parts[:-1])
        target = config_id if append else parent
        if target and not has_config_item(config, target) and not has_config_item(merged, target):
            if not append or "#" in config_id:
                raise BundleLayoutError(
                    f"Overlay key {key!r} refers to {target!r}, which this bundle does not define. The bundle has "
                    f"the {layout.name} layout (trainer {layout.trainer_id!r}, training transforms "
                    f"{layout.transforms_id!r}), so the overlay was written for another layout or bundle. Regenerate "
                    "it with `monai-unlearn revise BUNDLE --forget RULE`, or rename its keys to the bundle's ids."
                )
        if config_id == f"{layout.trainer_id}#_target_" and value == _UNLEARNING_TRAINER:
            replaces_trainer = True
        if config_id == layout.trainer_id and isinstance(value, dict) and value.get("_target_") == _UNLEARNING_TRAINER:
            replaces_trainer = True
        if not append and "#" not in config_id:
            merged[config_id] = value
    trainer = get_config_item(config, layout.trainer_id)
    if isinstance(trainer, dict) and trainer.get("_target_") == _UNLEARNING_TRAINER:
        replaces_trainer = True  # an earlier config file (such as unlearn.json before unlearn_paired.json) did it
    if not replaces_trainer:
        raise BundleLayoutError(
            f"The overlay does not set {layout.trainer_id + '#_target_'!r} to {_UNLEARNING_TRAINER!r}, so the bundle "
            "would run its ordinary training instead of a revision (and its validator could overwrite the "
            "checkpoint). Add that key, or regenerate the overlay with `monai-unlearn revise`."
        )


def dump_config(config: dict, suffix: str) -> str:
    """Return ``config`` as JSON (``.json``) or YAML (``.yaml``/``.yml``) text."""
    if suffix.lower() == ".json":
        return json.dumps(config, indent=4) + "\n"
    if suffix.lower() in (".yaml", ".yml"):
        import yaml

        return yaml.safe_dump(config, sort_keys=False, default_flow_style=False, width=120)
    raise ValueError(f"Unsupported config suffix {suffix!r}: expected .json, .yaml or .yml.")


def write_overlay(overlay: dict, path: str | os.PathLike) -> Path:
    """Write ``overlay`` atomically as JSON or YAML (chosen by the file suffix) and return the path.

    Raises:
        FileExistsError: when ``path`` exists and is not an overlay written by this function (it has no
            ``unlearn_request`` key), so a hand-written config is never replaced.
    """
    destination = Path(path)
    if destination.exists():
        from monai.bundle import ConfigParser

        try:
            existing = ConfigParser.load_config_file(str(destination))
        except Exception:  # unreadable: treat as a user's file
            existing = None
        if not isinstance(existing, dict) or OVERLAY_REQUEST_KEY not in existing:
            raise FileExistsError(
                f"{str(destination)!r} exists and was not generated by monai-unlearn; it is left unchanged. Choose "
                "another overlay file name (--overlay-file) or move that file."
            )
    return atomic_write_text(destination, dump_config(overlay, destination.suffix))
