# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""The datalist of the hippocampus segmentation bundle, with the per-case fields that forget rules read.

The source is the Medical Segmentation Decathlon Task04 (hippocampus MRI crops with labels 0 background,
1 anterior and 2 posterior hippocampus; Antonelli et al., Nature Communications 13, 4128, 2022; Simpson et al.,
arXiv:1902.09063, 2019; CC BY-SA 4.0). The builder does not copy images: the datalist points at the NIfTI files of
the data directory. Each entry carries, besides ``image`` and ``label``:

- ``case_id``: the file name without extension, for example ``hippocampus_001``;
- ``hippocampus_volume_ml``, ``anterior_volume_ml``, ``posterior_volume_ml``: label volumes in millilitres, computed
  as voxel count times the voxel volume read from the label's header;
- ``spacing_mm`` and ``shape``: the voxel spacing and the array shape of the label;
- ``image_dtype``: the stored data type of the image (``uint8`` or ``float32``), which splits the dataset into two
  groups of unknown origin.

Cases are split at random (seeded) into ``training``, ``validation`` and ``test``. The builder also writes a demo
deletion request, ``deletion_request.txt``: a few training case IDs, one per line, as a patient's request would list
them.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .paths import resolve_data_dir

__all__ = [
    "HIPPOCAMPUS_LABELS",
    "HIPPOCAMPUS_SPLITS",
    "hippocampus_case_fields",
    "build_hippocampus_datalist",
]

logger = logging.getLogger(__name__)

#: Label values of MSD Task04 and their names.
HIPPOCAMPUS_LABELS = {0: "background", 1: "anterior", 2: "posterior"}
HIPPOCAMPUS_SPLITS = ("training", "validation", "test")
DELETION_REQUEST_FILE = "deletion_request.txt"


def hippocampus_case_fields(label_path: str | os.PathLike) -> dict[str, Any]:
    """Read a label map and return its label volumes in millilitres, its voxel spacing in millimetres and its shape.

    Raises:
        ValueError: when the label map contains values other than 0, 1 and 2, or its spacing is not positive.
    """
    import nibabel as nib

    label = nib.load(str(label_path))
    values = np.asarray(label.dataobj)
    spacing = [float(s) for s in label.header.get_zooms()[:3]]
    if any(s <= 0 for s in spacing):
        raise ValueError(f"Label {str(label_path)!r} has a non-positive voxel spacing {spacing}; fix its header.")
    unexpected = sorted(set(np.unique(values).tolist()) - set(HIPPOCAMPUS_LABELS))
    if unexpected:
        raise ValueError(
            f"Invalid label map {str(label_path)!r}: it contains values {unexpected} besides 0 (background), "
            "1 (anterior) and 2 (posterior), so it is not an MSD Task04 label map."
        )
    voxel_ml = float(np.prod(spacing)) / 1000.0
    anterior = int((values == 1).sum())
    posterior = int((values == 2).sum())
    return {
        "hippocampus_volume_ml": round((anterior + posterior) * voxel_ml, 4),
        "anterior_volume_ml": round(anterior * voxel_ml, 4),
        "posterior_volume_ml": round(posterior * voxel_ml, 4),
        "spacing_mm": spacing,
        "shape": [int(s) for s in values.shape[:3]],
    }


def _case_pairs(source: Path) -> list[tuple[str, Path, Path]]:
    images = source / "images"
    labels = source / "labels"
    if not images.is_dir() or not labels.is_dir():
        raise FileNotFoundError(
            f"{str(source)!r} must contain images/ and labels/ with MSD Task04 NIfTI files; see the README's 'Data' "
            "section for how to obtain them."
        )
    pairs = []
    for image in sorted(images.glob("*.nii.gz")):
        label = labels / image.name
        if label.is_file():
            pairs.append((image.name[: -len(".nii.gz")], image.resolve(), label.resolve()))
        else:
            logger.warning("Skipping %s: it has no label file.", image.name)
    if not pairs:
        raise FileNotFoundError(f"No image/label pairs found under {str(source)!r}.")
    return pairs


def _image_dtype(image_path: Path) -> str:
    import nibabel as nib

    return str(nib.load(str(image_path)).get_data_dtype())


def build_hippocampus_datalist(
    output_dir: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    split_fractions: Sequence[float] = (0.7, 0.1),
    max_cases: int | None = None,
    deletion_request_size: int = 18,
    seed: int = 0,
) -> Path:
    """Write ``datalist.json`` and ``deletion_request.txt`` for the hippocampus bundle under ``output_dir``.

    Args:
        output_dir: folder of the two files; created if needed.
        data_dir: the data directory holding ``msd_hippocampus/`` (see :func:`~monai_unlearn.data.resolve_data_dir`).
        split_fractions: fractions of the cases in the training and validation splits; the rest is the test split.
        max_cases: use at most this many cases, drawn at random before the split (for small test settings).
        deletion_request_size: number of training case IDs in the demo deletion request.
        seed: seed of the case draw, the split and the deletion request.

    Returns:
        Path of the written ``datalist.json``. Its ``training``, ``validation`` and ``test`` lists contain the
        entries, and ``labels`` maps label values to names. ``counts`` gives the split sizes, and
        ``training_volume_percentiles`` the 50th, 75th, 90th and 95th percentiles of ``hippocampus_volume_ml`` over
        the training split.

    Raises:
        FileNotFoundError: when the data directory lacks the MSD hippocampus files.
        ValueError: for invalid fractions or sizes.
    """
    if len(split_fractions) != 2 or min(split_fractions) <= 0 or sum(split_fractions) >= 1:
        raise ValueError(
            f"Invalid split_fractions {tuple(split_fractions)}: give (training, validation), both > 0 with a sum "
            "below 1 so that the test split is not empty."
        )
    if max_cases is not None and max_cases < 3:
        raise ValueError(f"Invalid max_cases {max_cases}: the three splits need at least 3 cases.")
    source = resolve_data_dir(data_dir) / "msd_hippocampus"
    pairs = _case_pairs(source)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pairs))
    if max_cases is not None:
        order = order[:max_cases]
    total = len(order)
    n_train = max(1, int(round(split_fractions[0] * total)))
    n_validation = max(1, int(round(split_fractions[1] * total)))
    if n_train + n_validation >= total:
        raise ValueError(f"{total} cases are too few for the split fractions {tuple(split_fractions)}.")
    if not 1 <= deletion_request_size < n_train:
        raise ValueError(
            f"Invalid deletion_request_size {deletion_request_size}: it must be between 1 and {n_train - 1}, "
            f"the number of training cases minus one."
        )
    split_of = {}
    for position, index in enumerate(order):
        if position < n_train:
            split_of[int(index)] = "training"
        elif position < n_train + n_validation:
            split_of[int(index)] = "validation"
        else:
            split_of[int(index)] = "test"

    datalist: dict[str, Any] = {
        "name": "MSD Task04 hippocampus",
        "labels": {str(k): v for k, v in HIPPOCAMPUS_LABELS.items()},
        "licence": "CC BY-SA 4.0",
    }
    for split in HIPPOCAMPUS_SPLITS:
        datalist[split] = []
    for index in sorted(split_of):
        case_id, image, label = pairs[index]
        entry = {"image": str(image), "label": str(label), "case_id": case_id}
        entry.update(hippocampus_case_fields(label))
        entry["image_dtype"] = _image_dtype(image)
        datalist[split_of[index]].append(entry)

    volumes = np.array([e["hippocampus_volume_ml"] for e in datalist["training"]])
    datalist["training_volume_percentiles"] = {
        str(q): round(float(np.percentile(volumes, q)), 4) for q in (50, 75, 90, 95)
    }
    datalist["counts"] = {split: len(datalist[split]) for split in HIPPOCAMPUS_SPLITS}

    output = Path(output_dir).resolve()
    output.mkdir(parents=True, exist_ok=True)
    requested = sorted(rng.choice([e["case_id"] for e in datalist["training"]], deletion_request_size, replace=False))
    request_lines = ["# Demo deletion request: training case IDs to forget, one per line.", *requested]
    (output / DELETION_REQUEST_FILE).write_text("\n".join(request_lines) + "\n", encoding="utf-8")
    path = output / "datalist.json"
    path.write_text(json.dumps(datalist, indent=1), encoding="utf-8")
    logger.info(
        "Wrote the hippocampus datalist %s (%s) and a deletion request of %d cases.",
        path,
        datalist["counts"],
        deletion_request_size,
    )
    return path
