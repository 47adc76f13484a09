# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Bundle layout detection: where a bundle's trainer, training data and preprocessing live in its config.

This module sits before the run: it reads a bundle's training config (JSON or YAML, never evaluated) and finds the
config ids an unlearning overlay has to change. Two layouts are common:

- the model-zoo layout, with nested ids such as ``train#trainer``, ``train#handlers``, ``train#dataset`` and
  ``validate#evaluator``;
- the flat layout of the MONAI bundle tutorials and templates, with top-level ids such as ``trainer``,
  ``handlers``, ``train_dataset`` and ``evaluator``.

Rather than hard-coding either, :func:`detect_layout` starts from the trainer and follows the config references
(``@id``, ``%id`` and ``$`` expressions that refer to one id). They lead to the training loader, its dataset and the
list of transforms that the forget-tagging transform must be appended to. When that list is built by an expression (as in
the zoo spleen bundle, where ``train#preprocessing#transforms`` is
``"$@train#deterministic_transforms + @train#random_transforms"``), the first referenced id that holds a list of
transforms is chosen, so the tag is written before the random transforms.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "BundleLayout",
    "BundleLayoutError",
    "CONFIG_SUFFIXES",
    "detect_layout",
    "find_training_configs",
    "get_config_item",
    "has_config_item",
    "load_bundle_config",
    "normalize_id",
    "referenced_ids",
]

#: File suffixes of bundle configs that MONAI's ``ConfigParser`` reads.
CONFIG_SUFFIXES = (".json", ".yaml", ".yml")

_ID_PATTERN = r"[A-Za-z_][\w]*(?:(?:#|::)\w+)*"
_REFERENCE = re.compile(rf"@({_ID_PATTERN})")
_WHOLE_REFERENCE = re.compile(rf"^\s*\$?\s*@({_ID_PATTERN})\s*$")
_WHOLE_MACRO = re.compile(rf"^\s*%({_ID_PATTERN})\s*$")
_MAX_REFERENCE_HOPS = 32


class BundleLayoutError(ValueError):
    """Raised when a bundle config does not have the structure an unlearning overlay needs."""


@dataclass(frozen=True)
class BundleLayout:
    """Config ids of the parts of a bundle that a revision changes or reads.

    Attributes:
        name: ``"model-zoo"`` (``train#trainer``), ``"flat"`` (top-level ``trainer``) or ``"custom"`` (a trainer id
            given by the caller).
        trainer_id: id of the training engine, for example ``train#trainer``.
        loader_id: id of the training data loader config.
        dataset_id: id of the training dataset config.
        transforms_id: id of the list of transforms that the forget-tagging transform is appended to.
        preprocessing_expression: the ``$`` expression that builds the training preprocessing, when there is one;
            ``transforms_id`` is then the first list it refers to.
        datalist_id: id of the training dataset's ``data`` argument, or None when the dataset has none.
        optimizer_id: id of the optimizer config whose ``lr`` a revision may set, or None when the optimizer is an
            expression.
        evaluator_id: id of the validation engine, or None.
        validation_loader_id: id of the validation data loader, or None.
        validation_transforms_id: id of the validation transform list, or None.
        run_id: id of the bundle's expression list that runs the trainer, or None.
    """

    name: str
    trainer_id: str
    loader_id: str
    dataset_id: str
    transforms_id: str
    preprocessing_expression: str | None = None
    datalist_id: str | None = None
    optimizer_id: str | None = None
    evaluator_id: str | None = None
    validation_loader_id: str | None = None
    validation_transforms_id: str | None = None
    run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the layout as a plain dictionary (for logs and the overlay's request record)."""
        return asdict(self)


def normalize_id(config_id: str) -> str:
    """Return ``config_id`` with ``#`` as the separator (MONAI accepts both ``#`` and ``::``)."""
    return config_id.replace("::", "#")


def _split(config_id: str) -> list[str]:
    return [part for part in normalize_id(config_id).split("#") if part != ""]


def get_config_item(config: Any, config_id: str) -> Any:
    """Return the raw config value at ``config_id`` (``"a#b#0"`` walks dictionaries and list indices).

    Raises:
        KeyError: when a part of the id does not exist; the message names the missing part.
    """
    value = config
    walked: list[str] = []
    for part in _split(config_id):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            where = "#".join(walked) or "the top level"
            raise KeyError(f"Config id {normalize_id(config_id)!r} not found: {where} has no {part!r}.")
        walked.append(part)
    return value


def has_config_item(config: Any, config_id: str) -> bool:
    """Return True when ``config_id`` exists in ``config``."""
    try:
        get_config_item(config, config_id)
    except KeyError:
        return False
    return True


def referenced_ids(value: Any) -> list[str]:
    """Return the ids that a config string refers to with ``@id``, in order of appearance, without repeats."""
    if not isinstance(value, str):
        return []
    found: list[str] = []
    for match in _REFERENCE.finditer(value):
        config_id = normalize_id(match.group(1))
        if config_id not in found:
            found.append(config_id)
    return found


def _single_reference(value: Any) -> str | None:
    """Return the id when ``value`` is exactly one reference (``"@id"``, ``"$@id"`` or the macro ``"%id"``)."""
    if not isinstance(value, str):
        return None
    match = _WHOLE_REFERENCE.match(value) or _WHOLE_MACRO.match(value)
    return normalize_id(match.group(1)) if match else None


def _follow(config: dict, config_id: str) -> tuple[str, Any]:
    """Follow single references from ``config_id`` to the item they end at; return its id and raw value."""
    seen = [config_id]
    value = get_config_item(config, config_id)
    for _ in range(_MAX_REFERENCE_HOPS):
        target = _single_reference(value)
        if target is None:
            return config_id, value
        if target in seen:
            raise BundleLayoutError(f"Config references form a cycle: {' -> '.join(seen + [target])}.")
        seen.append(target)
        try:
            value = get_config_item(config, target)
        except KeyError as error:
            raise BundleLayoutError(f"{config_id!r} refers to {target!r}, which does not exist ({error}).") from error
        config_id = target
    raise BundleLayoutError(f"Config references from {seen[0]!r} are nested more than {_MAX_REFERENCE_HOPS} levels.")


def _follow_argument(config: dict, component_id: str, argument: str, what: str) -> tuple[str, Any]:
    argument_id = f"{component_id}#{argument}"
    if not has_config_item(config, argument_id):
        raise BundleLayoutError(
            f"The {what} is not configured: {component_id!r} has no argument {argument!r}. The unlearning overlay "
            f"needs it to find the training data; add it to the bundle config."
        )
    return _follow(config, argument_id)


def _transform_list_id(config: dict, item_id: str, purpose: str) -> tuple[str, str | None]:
    """Return the id of the transform list behind a dataset's ``transform`` argument and the expression, if any."""
    item_id, value = _follow(config, item_id)
    if isinstance(value, list):
        return item_id, None
    if isinstance(value, dict):
        if "transforms" in value:
            return _transform_list_id(config, f"{item_id}#transforms", purpose)
        target = value.get("_target_", "a component")
        raise BundleLayoutError(
            f"The {purpose} {item_id!r} is {target} without a 'transforms' list, so there is no list to append the "
            "forget-tagging transform to. Wrap the transforms in a Compose with a 'transforms' list, or pass "
            "transforms_id."
        )
    if isinstance(value, str) and value.lstrip().startswith("$"):
        for reference in referenced_ids(value):
            try:
                target_id, target = _follow(config, reference)
            except KeyError:
                continue
            if isinstance(target, list):
                return target_id, value.strip()
        raise BundleLayoutError(
            f"The {purpose} {item_id!r} is the expression {value.strip()!r}, and none of the ids it refers to is a "
            "list of transforms. Pass transforms_id with the id of the list the forget tag should be appended to."
        )
    raise BundleLayoutError(
        f"The {purpose} {item_id!r} has an unsupported form ({type(value).__name__}: {str(value)[:80]!r}); expected "
        "a list of transforms, a Compose with a 'transforms' list, or a reference to one. Pass transforms_id."
    )


def _find_validator(config: dict, trainer_id: str, default_id: str) -> str | None:
    """Return the id of the evaluator run by the trainer's ``ValidationHandler``, or ``default_id`` if it exists."""
    if has_config_item(config, f"{trainer_id}#train_handlers"):
        try:
            handlers_id, handlers = _follow(config, f"{trainer_id}#train_handlers")
        except (KeyError, BundleLayoutError):
            handlers = None
        if isinstance(handlers, list):
            for index, handler in enumerate(handlers):
                if isinstance(handler, dict) and str(handler.get("_target_", "")).endswith("ValidationHandler"):
                    target = _single_reference(handler.get("validator"))
                    if target is not None and has_config_item(config, target):
                        return target
    return default_id if has_config_item(config, default_id) else None


def _find_run_id(config: dict, trainer_id: str) -> str | None:
    separator = "(?:#|::)"
    call = re.compile("@" + separator.join(re.escape(part) for part in _split(trainer_id)) + r"\s*\.\s*run\s*\(")
    for key, value in config.items():
        expressions = value if isinstance(value, list) else [value]
        if any(isinstance(item, str) and call.search(item) for item in expressions):
            return key
    return None


def detect_layout(config: dict, trainer_id: str | None = None, transforms_id: str | None = None) -> BundleLayout:
    """Find the ids of a bundle's trainer, training data, preprocessing and validation in a raw config.

    Args:
        config: the merged training config, as returned by :func:`load_bundle_config` (not evaluated).
        trainer_id: id of the training engine, for bundles whose trainer is neither ``train#trainer`` nor
            ``trainer``.
        transforms_id: id of the transform list the forget tag is appended to, when the automatic choice is wrong.

    Returns:
        the :class:`BundleLayout`.

    Raises:
        BundleLayoutError: when no trainer is found (an unknown layout), when both layouts are present, or when the
            trainer's loader, dataset or transforms cannot be followed. The message names the id and the fix.
    """
    if not isinstance(config, dict):
        raise BundleLayoutError(f"A bundle config must be a mapping, got {type(config).__name__}.")
    zoo = isinstance(config.get("train"), dict) and isinstance(config["train"].get("trainer"), dict)
    flat = isinstance(config.get("trainer"), dict) and "_target_" in config["trainer"]
    if trainer_id is not None:
        trainer_id = normalize_id(trainer_id)
        if not has_config_item(config, trainer_id):
            raise BundleLayoutError(f"The trainer id {trainer_id!r} does not exist in the bundle config.")
        names = {"train#trainer": "model-zoo", "trainer": "flat"}
        name = names.get(trainer_id, "custom")
    elif zoo and flat:
        raise BundleLayoutError(
            "The bundle config defines both 'train#trainer' (model-zoo layout) and 'trainer' (flat layout); pass "
            "trainer_id to say which one the bundle runs."
        )
    elif zoo:
        trainer_id, name = "train#trainer", "model-zoo"
    elif flat:
        trainer_id, name = "trainer", "flat"
    else:
        keys = ", ".join(sorted(map(str, config))[:25]) or "none"
        raise BundleLayoutError(
            "Unknown bundle layout: the config has neither 'train#trainer' (model-zoo layout) nor a top-level "
            f"'trainer' component (flat layout of the MONAI bundle templates). Its top-level ids are: {keys}. Pass "
            "trainer_id (monai-unlearn revise --trainer-id ID) with the id of the training engine."
        )

    trainer = get_config_item(config, trainer_id)
    if not isinstance(trainer, dict) or "_target_" not in trainer:
        raise BundleLayoutError(f"The trainer {trainer_id!r} must be a component with a '_target_'.")
    loader_id, loader = _follow_argument(config, trainer_id, "train_data_loader", "training data loader")
    if not isinstance(loader, dict):
        raise BundleLayoutError(
            f"The training data loader {loader_id!r} is not a component ({str(loader)[:80]!r}); the overlay needs its "
            "dataset. Define the loader with '_target_' and a 'dataset' argument."
        )
    dataset_id, dataset = _follow_argument(config, loader_id, "dataset", "training dataset")
    if not isinstance(dataset, dict):
        raise BundleLayoutError(
            f"The training dataset {dataset_id!r} is not a component ({str(dataset)[:80]!r}); define it with "
            "'_target_' and a 'transform' argument."
        )
    if transforms_id is not None:
        transforms_id = normalize_id(transforms_id)
        target_id, target = _follow(config, transforms_id)
        if not isinstance(target, list):
            raise BundleLayoutError(f"transforms_id {transforms_id!r} must name a list of transforms.")
        expression = None
    else:
        if "transform" not in dataset:
            raise BundleLayoutError(
                f"The training dataset {dataset_id!r} has no 'transform' argument, so the forget flag cannot be "
                "written before collation. Add the preprocessing to the dataset."
            )
        target_id, expression = _transform_list_id(config, f"{dataset_id}#transform", "training preprocessing")

    optimizer_id: str | None = None
    if has_config_item(config, f"{trainer_id}#optimizer"):
        try:
            candidate_id, candidate = _follow(config, f"{trainer_id}#optimizer")
        except BundleLayoutError:
            candidate_id, candidate = None, None
        if isinstance(candidate, dict) and "_target_" in candidate:
            optimizer_id = candidate_id

    evaluator_id = _find_validator(config, trainer_id, "validate#evaluator" if name == "model-zoo" else "evaluator")
    validation_loader_id = validation_transforms_id = None
    if evaluator_id is not None and has_config_item(config, f"{evaluator_id}#val_data_loader"):
        try:
            candidate_id, candidate = _follow(config, f"{evaluator_id}#val_data_loader")
        except BundleLayoutError:
            candidate_id, candidate = "", None
        if isinstance(candidate, dict):
            validation_loader_id = candidate_id
            try:
                validation_dataset_id, validation_dataset = _follow(config, f"{candidate_id}#dataset")
                if isinstance(validation_dataset, dict) and "transform" in validation_dataset:
                    validation_transforms_id = _transform_list_id(
                        config, f"{validation_dataset_id}#transform", "validation preprocessing"
                    )[0]
            except (KeyError, BundleLayoutError):
                validation_transforms_id = None

    return BundleLayout(
        name=name,
        trainer_id=trainer_id,
        loader_id=loader_id,
        dataset_id=dataset_id,
        transforms_id=target_id,
        preprocessing_expression=expression,
        datalist_id=f"{dataset_id}#data" if "data" in dataset else None,
        optimizer_id=optimizer_id,
        evaluator_id=evaluator_id,
        validation_loader_id=validation_loader_id,
        validation_transforms_id=validation_transforms_id,
        run_id=_find_run_id(config, trainer_id),
    )


def find_training_configs(bundle_dir: str | os.PathLike) -> list[Path]:
    """Return the bundle's training config files: ``configs/common.*`` (when present) then ``configs/train.*``.

    Raises:
        FileNotFoundError: when the bundle has no ``configs`` folder or no ``train.json``/``train.yaml``/
            ``train.yml``. The message lists the configs found and shows how to pass one.
    """
    configs = Path(bundle_dir) / "configs"
    if not configs.is_dir():
        raise FileNotFoundError(
            f"{str(Path(bundle_dir))!r} is not a MONAI bundle: it has no 'configs' folder. Pass the bundle's root "
            "folder (the one that contains configs/ and models/)."
        )
    found = [configs / f"train{suffix}" for suffix in CONFIG_SUFFIXES if (configs / f"train{suffix}").is_file()]
    if not found:
        present = sorted(p.name for p in configs.iterdir() if p.suffix in CONFIG_SUFFIXES)
        raise FileNotFoundError(
            f"The bundle {str(Path(bundle_dir))!r} has no training config (configs/train.json or configs/train.yaml); "
            f"its configs are: {', '.join(present) or 'none'}. Unlearning revises a bundle through its training "
            "config: pass it with --config-file (or config_files=[...])."
        )
    if len(found) > 1:
        raise FileNotFoundError(
            f"The bundle has more than one training config ({', '.join(p.name for p in found)}); pass the one to use "
            "with --config-file."
        )
    common = [configs / f"common{suffix}" for suffix in CONFIG_SUFFIXES if (configs / f"common{suffix}").is_file()]
    return common[:1] + found


def load_bundle_config(config_files: Sequence[str | os.PathLike]) -> dict:
    """Read and merge config files left to right, as the bundle CLI does, without evaluating anything.

    Raises:
        FileNotFoundError: for a missing file.
        ValueError: for a file that is not valid JSON or YAML, naming the file.
    """
    from monai.bundle import ConfigParser

    paths = [Path(f) for f in config_files]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"Config file {str(path)!r} not found.")
        if path.suffix.lower() not in CONFIG_SUFFIXES:
            raise ValueError(f"Config file {str(path)!r} must end with .json, .yaml or .yml.")
    try:
        return ConfigParser.load_config_files([str(p) for p in paths])
    except KeyError as error:
        raise BundleLayoutError(
            f"Merging {[p.name for p in paths]} failed: a key refers to a config id that does not exist ({error}). "
            "An overlay written for another bundle layout does this; check its ids against the bundle's."
        ) from error
    except ValueError as error:
        raise ValueError(f"Cannot read the configs {[str(p) for p in paths]}: {error}") from error
