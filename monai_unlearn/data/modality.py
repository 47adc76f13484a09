# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""A MedNIST-style modality dataset built from real public images, for the modality classifier bundle.

Three classes, each from real images of the data directory (see the data README for sources and licences):

- ``chest_xray`` (0): PneumoniaMNIST paediatric chest X-rays, 28x28 (Kermany et al., Cell 2018; MedMNIST v2);
- ``breast_ultrasound`` (1): BreastMNIST breast ultrasound, 28x28 (Al-Dhabyani et al., Data in Brief 2020);
- ``brain_mri`` (2): axial slices of the MSD Task04 hippocampus MRI crops (Antonelli et al., Nat. Commun. 2022)
  and of the NIH GE and SIEMENS EPI DICOM series (neurolabusc/dcm_qa_nih), SIEMENS mosaics split into slices.

The builder writes one 8-bit PNG per image and a Decathlon-style datalist (``training``, ``validation``, ``test``)
whose entries carry the fields forget rules read: ``label``, ``class_name``, ``source``, ``case_id``, ``finding``
and the DICOM header attributes ``Manufacturer``, ``ManufacturerModelName`` and ``StationName`` (empty strings for
images that do not come from DICOM files).
Hippocampus volumes are split by case, so no case has slices in two splits.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .paths import resolve_data_dir

__all__ = ["CLASS_NAMES", "build_modality_dataset", "split_mosaic", "to_uint8"]

logger = logging.getLogger(__name__)

CLASS_NAMES = ("chest_xray", "breast_ultrasound", "brain_mri")
SPLITS = ("training", "validation", "test")

#: Values of the fields that only some sources have, written into the entries of the other sources.
_EMPTY_FIELDS: dict[str, Any] = {
    "slice_index": -1,
    "source_dtype": "uint8",
    "dicom_file": "",
    "Manufacturer": "",
    "ManufacturerModelName": "",
    "StationName": "",
}


def to_uint8(image: np.ndarray, low_percentile: float = 0.5, high_percentile: float = 99.5) -> np.ndarray:
    """Scale an image to 0..255 between two intensity percentiles and return it as ``uint8``."""
    image = np.asarray(image, dtype=np.float64)
    low, high = np.percentile(image, [low_percentile, high_percentile])
    if high <= low:
        high = low + 1.0
    return (np.clip((image - low) / (high - low), 0.0, 1.0) * 255.0).round().astype(np.uint8)


def split_mosaic(pixels: np.ndarray, number_of_images: int) -> list[np.ndarray]:
    """Split a SIEMENS mosaic into its slices.

    A mosaic stores ``n`` slices as tiles of a square grid of ``ceil(sqrt(n))`` tiles per side, row by row. The
    trailing tiles of the grid are empty.

    Raises:
        ValueError: when the mosaic size is not a multiple of the grid size or ``number_of_images`` is not positive.
    """
    if number_of_images < 1:
        raise ValueError(f"NumberOfImagesInMosaic must be >= 1, got {number_of_images}.")
    grid = math.ceil(math.sqrt(number_of_images))
    rows, columns = pixels.shape[-2:]
    if rows % grid or columns % grid:
        raise ValueError(f"A {rows}x{columns} mosaic cannot hold a {grid}x{grid} grid of {number_of_images} slices.")
    tile_rows, tile_columns = rows // grid, columns // grid
    tiles = []
    for index in range(number_of_images):
        r, c = divmod(index, grid)
        tiles.append(pixels[r * tile_rows : (r + 1) * tile_rows, c * tile_columns : (c + 1) * tile_columns])
    return tiles


def _save_png(image: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def _subsample(indices: np.ndarray, labels: np.ndarray, count: int | None, rng: np.random.Generator) -> np.ndarray:
    """Return up to ``count`` indices, stratified by ``labels`` and in ascending order."""
    if count is None or count >= len(indices):
        return np.sort(indices)
    chosen = []
    classes = np.unique(labels[indices])
    for position, value in enumerate(classes):
        members = indices[labels[indices] == value]
        share = count // len(classes) + (1 if position < count % len(classes) else 0)
        chosen.append(rng.choice(members, size=min(share, len(members)), replace=False))
    return np.sort(np.concatenate(chosen))


def _medmnist_entries(
    npz_path: Path,
    output_dir: Path,
    source: str,
    label: int,
    findings: Sequence[str],
    counts: dict[str, int | None],
    rng: np.random.Generator,
) -> dict[str, list[dict[str, Any]]]:
    arrays = np.load(npz_path)
    entries: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    for split, prefix in zip(SPLITS, ("train", "val", "test")):
        images = arrays[f"{prefix}_images"]
        findings_index = arrays[f"{prefix}_labels"].reshape(-1).astype(int)
        chosen = _subsample(np.arange(len(images)), findings_index, counts.get(split), rng)
        for index in chosen:
            case_id = f"{source}-{prefix}-{index:05d}"
            relative = Path("images") / source / f"{case_id}.png"
            _save_png(images[index].astype(np.uint8), output_dir / relative)
            entries[split].append(
                {
                    "image": str(relative),
                    "label": label,
                    "class_name": CLASS_NAMES[label],
                    "source": source,
                    "case_id": case_id,
                    "finding": findings[findings_index[index]],
                }
            )
    return entries


def _hippocampus_entries(
    hippocampus_dir: Path,
    output_dir: Path,
    slice_fractions: Sequence[float],
    split_fractions: Sequence[float],
    max_cases: int | None,
    rng: np.random.Generator,
) -> dict[str, list[dict[str, Any]]]:
    import nibabel as nib

    paths = sorted((hippocampus_dir / "images").glob("*.nii.gz"))
    if not paths:
        raise FileNotFoundError(f"No hippocampus volumes found under {str(hippocampus_dir / 'images')!r}.")
    order = rng.permutation(len(paths))
    n_train = int(round(split_fractions[0] * len(paths)))
    n_val = int(round(split_fractions[1] * len(paths)))
    split_of = {}
    for rank, index in enumerate(order):
        if rank < n_train:
            split_of[index] = "training"
        elif rank < n_train + n_val:
            split_of[index] = "validation"
        else:
            split_of[index] = "test"
    entries: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    taken = {split: 0 for split in SPLITS}
    for index, path in enumerate(paths):
        split = split_of[index]
        if max_cases is not None and taken[split] >= max_cases:
            continue
        taken[split] += 1
        image = nib.load(str(path))
        volume = np.asarray(image.dataobj)
        case_id = path.name.replace(".nii.gz", "")
        scaled = to_uint8(volume)
        for fraction in slice_fractions:
            z = min(volume.shape[2] - 1, int(round(fraction * (volume.shape[2] - 1))))
            relative = Path("images") / "msd_hippocampus" / f"{case_id}-z{z:02d}.png"
            _save_png(scaled[:, :, z], output_dir / relative)
            entries[split].append(
                {
                    "image": str(relative),
                    "label": 2,
                    "class_name": CLASS_NAMES[2],
                    "source": "msd_hippocampus",
                    "case_id": case_id,
                    "finding": "none",
                    "slice_index": z,
                    "source_dtype": str(volume.dtype),
                }
            )
    return entries


def _dicom_entries(dicom_dir: Path, output_dir: Path, max_per_vendor: int | None) -> dict[str, list[dict[str, Any]]]:
    import pydicom

    entries: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    files = sorted(dicom_dir.rglob("*.dcm"))
    if not files:
        raise FileNotFoundError(f"No DICOM files found under {str(dicom_dir)!r}.")
    per_vendor: dict[str, int] = {}
    for path in files:
        dataset = pydicom.dcmread(str(path))
        vendor = str(dataset.get("Manufacturer", "")).strip()
        if max_per_vendor is not None and per_vendor.get(vendor, 0) >= max_per_vendor:
            continue
        pixels = dataset.pixel_array
        mosaic = dataset.get((0x0019, 0x100A))
        image_type = [str(v).upper() for v in dataset.get("ImageType", [])]
        if mosaic is not None or "MOSAIC" in image_type:
            if mosaic is None:
                raise ValueError(f"{str(path)!r} is a MOSAIC image without NumberOfImagesInMosaic (0019,100A).")
            slices = split_mosaic(pixels, int(mosaic.value))
        else:
            slices = [pixels]
        instance = int(dataset.get("InstanceNumber", 0))
        series = int(dataset.get("SeriesNumber", 0))
        if "SIEMENS" in vendor.upper():
            # Two files per series: the first trains, the second is held out.
            split = "training" if instance == 1 else "test"
        else:
            # Ten time points of fifteen slice positions: seven train, one validates, two are held out.
            time_point = (instance - 1) % 10
            if time_point < 7:
                split = "training"
            elif time_point == 7:
                split = "validation"
            else:
                split = "test"
        study = path.parent.parent.name
        for slice_number, pixels_2d in enumerate(slices):
            case_id = f"nih-{study}-s{series:02d}-i{instance:03d}"
            relative = Path("images") / "nih_dicom" / f"{case_id}-{slice_number}.png"
            _save_png(to_uint8(pixels_2d), output_dir / relative)
            entries[split].append(
                {
                    "image": str(relative),
                    "label": 2,
                    "class_name": CLASS_NAMES[2],
                    "source": "nih_dicom",
                    "case_id": case_id,
                    "finding": "none",
                    "dicom_file": str(path.relative_to(dicom_dir)),
                    "Manufacturer": vendor,
                    "ManufacturerModelName": str(dataset.get("ManufacturerModelName", "")).strip(),
                    "StationName": str(dataset.get("StationName", "")).strip(),
                }
            )
        per_vendor[vendor] = per_vendor.get(vendor, 0) + 1
    return entries


def build_modality_dataset(
    output_dir: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    chest_counts: Sequence[int | None] = (700, 100, 200),
    breast_counts: Sequence[int | None] = (None, None, None),
    hippocampus_slices: Sequence[float] = (0.35, 0.5, 0.65),
    hippocampus_split: Sequence[float] = (0.7, 0.1),
    max_hippocampus_cases: int | None = None,
    include_dicom: bool = True,
    max_dicom_files_per_vendor: int | None = None,
    seed: int = 0,
) -> Path:
    """Write the modality dataset's PNG images and ``datalist.json`` under ``output_dir``.

    Args:
        output_dir: folder for ``images/`` and ``datalist.json``; created if needed.
        data_dir: the data directory (see :func:`~monai_unlearn.data.resolve_data_dir`).
        chest_counts: chest X-rays per split (training, validation, test), stratified by finding; None keeps all.
        breast_counts: breast ultrasound images per split; None keeps all.
        hippocampus_slices: positions of the axial slices taken from each hippocampus volume, as fractions of depth.
        hippocampus_split: fractions of hippocampus cases in training and validation; the rest is the test split.
        max_hippocampus_cases: at most this many cases per split (for small test settings); None keeps all.
        include_dicom: add the NIH GE and SIEMENS DICOM slices to the brain MRI class.
        max_dicom_files_per_vendor: at most this many DICOM files per manufacturer; None keeps all.
        seed: seed of the subsampling and of the hippocampus case split.

    Returns:
        Path of the written ``datalist.json``.

    Raises:
        FileNotFoundError: when a source dataset is missing from the data directory.
    """
    root = resolve_data_dir(data_dir)
    output = Path(output_dir).resolve()
    output.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    medmnist = root / "medmnist"
    for name in ("pneumoniamnist_subset_balanced.npz", "breastmnist_resaved.npz"):
        if not (medmnist / name).is_file():
            raise FileNotFoundError(f"{str(medmnist / name)!r} is missing; see the README's 'Data' section.")

    parts = [
        _medmnist_entries(
            medmnist / "pneumoniamnist_subset_balanced.npz",
            output,
            "pneumoniamnist",
            0,
            ("normal", "pneumonia"),
            dict(zip(SPLITS, chest_counts)),
            rng,
        ),
        _medmnist_entries(
            medmnist / "breastmnist_resaved.npz",
            output,
            "breastmnist",
            1,
            ("malignant", "normal_or_benign"),
            dict(zip(SPLITS, breast_counts)),
            rng,
        ),
        _hippocampus_entries(
            root / "msd_hippocampus", output, hippocampus_slices, hippocampus_split, max_hippocampus_cases, rng
        ),
    ]
    if include_dicom:
        parts.append(_dicom_entries(root / "dicom_nih_ge_siemens", output, max_dicom_files_per_vendor))

    datalist: dict[str, Any] = {"classes": list(CLASS_NAMES)}
    for split in SPLITS:
        # Every entry gets every field, because collation needs the same keys in all samples of a batch.
        datalist[split] = [{**_EMPTY_FIELDS, **entry} for part in parts for entry in part[split]]
    counts = {
        split: {name: sum(e["label"] == i for e in datalist[split]) for i, name in enumerate(CLASS_NAMES)}
        for split in SPLITS
    }
    datalist["counts"] = counts
    path = output / "datalist.json"
    path.write_text(json.dumps(datalist, indent=1), encoding="utf-8")
    logger.info("Wrote the modality datalist %s: %s", path, counts)
    return path
