# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Build the PneumoniaMNIST dataset of the pneumonia classifier bundle, with simulated deletion requests.

This sits before the bundle: it writes PNG images and a decathlon-style ``datalist.json`` that the bundle's
``train.json`` loads. Every training image gets a ``request_group`` from 0 to ``request_groups - 1``, drawn as a
seeded random permutation, so that the rule ``"request_group == g"`` selects a random ``1 / request_groups`` share of
the training images: a stand-in for the images named in patients' deletion requests. Validation and test images get
``request_group = -1`` and are never selected.

Source: PneumoniaMNIST (Yang et al., MedMNIST v2, Scientific Data 10, 41, 2023; images from Kermany et al., Cell
172(5), 2018), the class-balanced subset ``medmnist/pneumoniamnist_subset_balanced.npz`` of the data directory.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .modality import _save_png, _subsample
from .paths import resolve_data_dir

__all__ = ["PNEUMONIA_CLASS_NAMES", "PNEUMONIA_FILE", "build_pneumonia_dataset"]

logger = logging.getLogger(__name__)

PNEUMONIA_CLASS_NAMES = ("normal", "pneumonia")
PNEUMONIA_FILE = Path("medmnist") / "pneumoniamnist_subset_balanced.npz"
_SPLITS = (("training", "train"), ("validation", "val"), ("test", "test"))


def build_pneumonia_dataset(
    output_dir: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    counts: Sequence[int | None] = (None, None, None),
    request_groups: int = 10,
    seed: int = 0,
) -> Path:
    """Write the PneumoniaMNIST PNG images and ``datalist.json`` under ``output_dir``.

    Args:
        output_dir: folder for ``images/`` and ``datalist.json``; created if needed.
        data_dir: the data directory (see :func:`~monai_unlearn.data.resolve_data_dir`).
        counts: images per split (training, validation, test), stratified by class; None keeps all
            (2428, 270 and 468 images in the balanced subset).
        request_groups: number of equal random groups of training images; group ``g`` is one simulated set of
            deletion requests of ``1 / request_groups`` of the training images.
        seed: seed of the subsampling and of the group assignment.

    Returns:
        Path of the written ``datalist.json``.

    Raises:
        FileNotFoundError: when the PneumoniaMNIST file is missing from the data directory.
        ValueError: when ``request_groups`` is below 2 or above the number of training images.
    """
    path = resolve_data_dir(data_dir) / PNEUMONIA_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} is missing; see the README's 'Data' section.")
    output = Path(output_dir).resolve()
    output.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = np.load(path)
    datalist: dict[str, Any] = {"classes": list(PNEUMONIA_CLASS_NAMES)}
    for (split, prefix), count in zip(_SPLITS, counts):
        images = arrays[f"{prefix}_images"]
        labels = arrays[f"{prefix}_labels"].reshape(-1).astype(int)
        chosen = _subsample(np.arange(len(images)), labels, count, rng)
        entries = []
        for index in chosen:
            case_id = f"pneumoniamnist-{prefix}-{index:05d}"
            relative = Path("images") / f"{case_id}.png"
            _save_png(images[index].astype(np.uint8), output / relative)
            label = int(labels[index])
            entries.append(
                {
                    "image": str(relative),
                    "label": label,
                    "class_name": PNEUMONIA_CLASS_NAMES[label],
                    "case_id": case_id,
                    "request_group": -1,
                }
            )
        datalist[split] = entries

    training = datalist["training"]
    if not 2 <= request_groups <= len(training):
        raise ValueError(
            f"Invalid request_groups {request_groups}: it must be between 2 and the {len(training)} training images."
        )
    # Equal group sizes (up to one image) in a random order: group g is a uniform random subset of the images.
    groups = rng.permutation(np.arange(len(training)) % request_groups)
    for entry, group in zip(training, groups):
        entry["request_group"] = int(group)

    datalist["counts"] = {
        split: {name: sum(e["label"] == i for e in datalist[split]) for i, name in enumerate(PNEUMONIA_CLASS_NAMES)}
        for split, _ in _SPLITS
    }
    datalist_path = output / "datalist.json"
    datalist_path.write_text(json.dumps(datalist, indent=1), encoding="utf-8")
    logger.info("Wrote the PneumoniaMNIST datalist %s: %s", datalist_path, datalist["counts"])
    return datalist_path
