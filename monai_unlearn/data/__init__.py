# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Data: the data directory, and builders of the real datasets used by the example bundles."""

from __future__ import annotations

from .hippocampus import HIPPOCAMPUS_LABELS, HIPPOCAMPUS_SPLITS, build_hippocampus_datalist, hippocampus_case_fields
from .modality import CLASS_NAMES, build_modality_dataset, split_mosaic, to_uint8
from .paths import DATA_DIR_ENV, REPOSITORY_ROOT, resolve_data_dir

__all__ = [
    "CLASS_NAMES",
    "DATA_DIR_ENV",
    "REPOSITORY_ROOT",
    "build_modality_dataset",
    "resolve_data_dir",
    "split_mosaic",
    "to_uint8",
    "HIPPOCAMPUS_LABELS",
    "HIPPOCAMPUS_SPLITS",
    "build_hippocampus_datalist",
    "hippocampus_case_fields",
]

from .pneumonia import PNEUMONIA_CLASS_NAMES, PNEUMONIA_FILE, build_pneumonia_dataset  # noqa: E402

__all__ += ["PNEUMONIA_CLASS_NAMES", "PNEUMONIA_FILE", "build_pneumonia_dataset"]
from .readers import SimpleITKReader  # noqa: E402

__all__ += ["SimpleITKReader"]

from .scanner import build_scanner_datalist  # noqa: E402

__all__ += ["build_scanner_datalist"]
