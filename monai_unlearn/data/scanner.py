# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""The datalist of the scanner classifier bundle: slices of real GE and SIEMENS MR DICOM files, by slab position.

The NIH dcm_qa_nih EPI series (neurolabusc/dcm_qa_nih, described in the data README) come from two vendors. There is
a GE DISCOVERY MR750 series of 10 time points x 15 slices (one slice per file) and there are 8 SIEMENS Skyra mosaics
of 5 slices each. These acquisitions have no clinical label, so the task is one the images do contain: whether an
axial slice lies in the inferior (0) or superior (1) half of its slab. The middle slice of an odd slab is left out.
Both vendors have both classes, so forgetting a vendor is not forgetting a class.

Entries point at the DICOM files where they are (nothing is copied) and carry ``image``, ``slice_index`` (the slice
within a mosaic, 0 for a single-slice file), ``label``, ``case_id`` and ``series``. The DICOM attributes that forget
rules read (``Manufacturer`` and the others) are deliberately absent: the bundle reads them from the headers with
``ReadDicomHeaderd`` when it loads the datalist.

Splits: GE time points 0, 1, 2, 5, 6 and 7 train, 3 and 8 validation, 4 and 9 test. Of the two SIEMENS mosaics
per phase-encoding direction the first is train and the second test. The validation split has no SIEMENS image, so
model selection never looks at the vendor that may be forgotten.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pydicom

from .paths import resolve_data_dir

__all__ = ["CLASS_NAMES", "DICOM_FOLDER", "build_scanner_datalist"]

logger = logging.getLogger(__name__)

CLASS_NAMES = ("inferior", "superior")
DICOM_FOLDER = "dicom_nih_ge_siemens"
_MOSAIC_TAG = (0x0019, 0x100A)
# Time points by split. Each split takes time points from both halves of the run, because the images of time points
# 2-4 and 6-8 match the same slice positions of time points 0, 1, 5 and 9 only to within one or two slices (compared
# by nearest neighbour), as after head motion.
_GE_SPLITS = {"training": (0, 1, 2, 5, 6, 7), "validation": (3, 8), "test": (4, 9)}


def _half_label(index: int, count: int) -> int | None:
    """Return 0 for the inferior half, 1 for the superior half, None for the middle slice of an odd slab."""
    if count % 2 == 1 and index == count // 2:
        return None
    return int(index >= count / 2)


def _ge_entries(folder: Path, max_time_points: int | None) -> dict[str, list[dict[str, Any]]]:
    headers = []
    for path in sorted(folder.rglob("*.dcm")):
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
        if _MOSAIC_TAG in dataset:
            continue
        position = float(dataset.ImagePositionPatient[2])
        headers.append((path, position, int(dataset.InstanceNumber), str(dataset.SeriesNumber)))
    positions = sorted({position for _, position, _, _ in headers})
    splits: dict[str, list[dict[str, Any]]] = {name: [] for name in _GE_SPLITS}
    for path, position, instance, series in headers:
        slice_rank = positions.index(position)  # 0 is the most inferior slice (smallest patient z)
        time_point = (instance - 1) // len(positions)
        split, points = next((name, points) for name, points in _GE_SPLITS.items() if time_point in points)
        if max_time_points is not None and points.index(time_point) >= max_time_points:
            continue
        label = _half_label(slice_rank, len(positions))
        if label is None:
            continue
        splits[split].append(
            {
                "image": str(path),
                "slice_index": 0,
                "label": label,
                "case_id": f"ge_s{series}_t{time_point:02d}_z{slice_rank:02d}",
                "series": f"ge_{series}",
            }
        )
    return splits


def _siemens_entries(folder: Path) -> dict[str, list[dict[str, Any]]]:
    splits: dict[str, list[dict[str, Any]]] = {"training": [], "validation": [], "test": []}
    for series_folder in sorted(path for path in folder.iterdir() if path.is_dir()):
        files = sorted(series_folder.glob("*.dcm"))
        for file_index, path in enumerate(files):
            dataset = pydicom.dcmread(path, stop_before_pixels=True)
            count = int(dataset[_MOSAIC_TAG].value)
            split = "training" if file_index == 0 else "test"
            # NOTE: the tile order of a mosaic is taken as the inferior-to-superior order, as in ascending
            # acquisitions. The SIEMENS CSA header that states the order is not parsed.
            for tile in range(count):
                label = _half_label(tile, count)
                if label is None:
                    continue
                splits[split].append(
                    {
                        "image": str(path),
                        "slice_index": tile,
                        "label": label,
                        "case_id": f"siemens_{series_folder.name}_f{file_index}_z{tile:02d}",
                        "series": f"siemens_{series_folder.name}",
                    }
                )
    return splits


def build_scanner_datalist(
    output_dir: str | Path, data_dir: str | Path | None = None, max_ge_time_points: int | None = None
) -> Path:
    """Write ``datalist.json`` of the scanner classifier into ``output_dir`` and return its path.

    Args:
        output_dir: folder of the datalist (created if needed).
        data_dir: the data directory; None uses :func:`~monai_unlearn.data.resolve_data_dir`.
        max_ge_time_points: keep only the first this many GE time points of each split (a small setting for
            tests); None keeps all 10.

    Raises:
        FileNotFoundError: when the DICOM folder is missing from the data directory.
    """
    folder = resolve_data_dir(data_dir) / DICOM_FOLDER
    if not folder.is_dir():
        raise FileNotFoundError(
            f"The DICOM folder {folder} does not exist; set MONAI_UNLEARN_DATA to the data directory."
        )
    ge = _ge_entries(folder / "20180918GE", max_ge_time_points)
    siemens = _siemens_entries(folder / "20180918Si")
    datalist = {split: ge[split] + siemens[split] for split in ("training", "validation", "test")}
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    path = output / "datalist.json"
    path.write_text(json.dumps(datalist, indent=1))
    logger.info(
        "Wrote %s: %s.", path, ", ".join(f"{split} {len(entries)} slices" for split, entries in datalist.items())
    )
    return path
