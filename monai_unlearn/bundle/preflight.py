# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Checks run before a revision starts, so that bad input fails in seconds with a clear message.

This module sits between building the overlay and running the bundle CLI. It parses the merged config in the
calling process (the same parsing the bundle CLI does) and evaluates only the training datalist and the network.
Then it checks what would otherwise fail later or with an unclear message:

- the forget rule against the datalist (fields that no entry has, an empty forget set, a forget set that is the
  whole training set);
- class labels outside the network's output range;
- image files that are missing or are not readable DICOM files;
- a checkpoint that is not a weights-only state_dict or does not fit the network.
 Failures raise :class:`PreflightError` (a ``ValueError``);
nothing is written.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from monai_unlearn.transforms import ForgetRule, as_rule, split_datalist
from monai_unlearn.utils import load_checkpoint, state_dict_layout

__all__ = [
    "DICOM_SUFFIXES",
    "PreflightError",
    "PreflightSummary",
    "check_checkpoint_fits",
    "check_datalist",
    "check_dicom_file",
    "check_image_files",
]


#: File suffixes read as DICOM by the image file check.
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".nii", ".nii.gz", ".npy", ".npz", ".nrrd", ".mha")
_UNCOMPRESSED_SYNTAXES = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2")


class PreflightError(ValueError):
    """Raised when a revision's input would fail or damage the run; nothing has been written."""


@dataclass
class PreflightSummary:
    """Counts checked by the preflight.

    Attributes:
        training_samples: entries of the training datalist (None when the dataset has no datalist).
        forget_samples: entries the rule selects.
        retain_samples: the other entries.
        dicom_files: DICOM files whose headers were read.
    """

    training_samples: int | None = None
    forget_samples: int | None = None
    retain_samples: int | None = None
    dicom_files: int = 0


def check_datalist(
    datalist: Sequence[Mapping[str, Any]],
    rule: ForgetRule | str,
    num_classes: int | None = None,
    label_key: str = "label",
) -> tuple[int, int]:
    """Check the forget rule and the class labels against the training datalist; return the forget and retain counts.

    Raises:
        PreflightError: when the datalist is empty or not a list of dictionaries, when no entry has a field the rule
            reads, when an integer label is outside ``[0, num_classes)``, or when the rule selects no entry or every
            entry.
    """
    rule = as_rule(rule)
    if not isinstance(datalist, Sequence) or not datalist:
        raise PreflightError("The training datalist is empty: there is nothing to revise. Check the bundle's datalist.")
    if not all(isinstance(entry, Mapping) for entry in datalist):
        raise PreflightError("The training datalist must be a list of dictionaries (one per sample).")
    for field in rule.fields():
        if not any(field in entry for entry in datalist):
            available = sorted({str(key) for entry in datalist[:50] for key in entry})
            raise PreflightError(
                f"The forget rule '{rule.describe()}' reads the field {field!r}, which none of the {len(datalist)} "
                f"training entries has (their fields: {', '.join(available)}). Fix the field name, or add the field "
                "to the datalist (for DICOM attributes, read them into each entry first)."
            )
    if num_classes is not None:
        for index, entry in enumerate(datalist):
            label = entry.get(label_key)
            if isinstance(label, bool) or not isinstance(label, int):
                continue
            if not 0 <= label < num_classes:
                raise PreflightError(
                    f"Training entry {index} has {label_key} {label}, outside [0, {num_classes - 1}] for the "
                    f"{num_classes} output classes of the network. Fix the label mapping of the datalist, or check "
                    "that the bundle's class count matches its data."
                )
    try:
        forget, retain = split_datalist(datalist, rule)
    except ValueError as error:
        raise PreflightError(str(error)) from error
    return len(forget), len(retain)


def check_dicom_file(path: str | os.PathLike) -> None:
    """Read a DICOM file and check that it has a file meta header and complete pixel data.

    Raises:
        PreflightError: naming the file, when it has no DICOM preamble and ``DICM`` prefix, has no transfer syntax,
            or its pixel data is missing or shorter than ``Rows x Columns x SamplesPerPixel x BitsAllocated``
            (a truncated file).
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    file = str(path)
    fix = "Replace the file with a complete copy, or remove its entry from the datalist."
    try:
        dataset = pydicom.dcmread(file)
    except InvalidDicomError as error:
        raise PreflightError(
            f"{file!r} is not a DICOM Part 10 file: it has no 128-byte preamble and 'DICM' prefix ({error}). Write it "
            f"again as a Part 10 file (for example pydicom's save_as(..., enforce_file_format=True)). {fix}"
        ) from error
    except Exception as error:  # pydicom raises several types for damaged files
        raise PreflightError(f"{file!r} is not a readable DICOM file ({type(error).__name__}: {error}). {fix}") from error
    syntax = getattr(dataset, "file_meta", None) and dataset.file_meta.get("TransferSyntaxUID")
    if not syntax:
        raise PreflightError(f"{file!r} is damaged or truncated: its file meta header has no Transfer Syntax UID. {fix}")
    if "Rows" in dataset and "Columns" in dataset:
        pixel_keywords = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
        if not any(keyword in dataset for keyword in pixel_keywords):
            raise PreflightError(f"{file!r} is truncated: it describes an image but has no pixel data. {fix}")
        if "PixelData" in dataset and str(syntax) in _UNCOMPRESSED_SYNTAXES:
            frames = int(dataset.get("NumberOfFrames", 1) or 1)
            samples = int(dataset.get("SamplesPerPixel", 1) or 1)
            bits = int(dataset.get("BitsAllocated", 8) or 8)
            expected = int(dataset.Rows) * int(dataset.Columns) * samples * frames * bits // 8
            if len(dataset.PixelData) < expected:
                raise PreflightError(
                    f"{file!r} is truncated: its pixel data has {len(dataset.PixelData)} bytes, {expected} expected. "
                    f"{fix}"
                )


def _looks_like_image_path(value: Any) -> bool:
    # Datalist loaders make the paths they load absolute; relative ones are records (such as a source file name).
    return isinstance(value, str) and os.path.isabs(value) and value.lower().endswith(DICOM_SUFFIXES + _IMAGE_SUFFIXES)


def check_image_files(datalist: Sequence[Mapping[str, Any]]) -> int:
    """Check that the image files a datalist names (absolute paths) exist, and read every DICOM file among them.

    Returns:
        the number of DICOM files checked.

    Raises:
        PreflightError: for a missing file or a DICOM file that :func:`check_dicom_file` rejects.
    """
    dicom_files = 0
    for index, entry in enumerate(datalist):
        for key, value in entry.items():
            if not _looks_like_image_path(value):
                continue
            if not Path(value).is_file():
                raise PreflightError(
                    f"Training entry {index}: the file {value!r} ({key}) does not exist. Fix the datalist or the data "
                    "directory (dataset_dir)."
                )
            if value.lower().endswith(DICOM_SUFFIXES):
                check_dicom_file(value)
                dicom_files += 1
    return dicom_files


def check_checkpoint_fits(network: torch.nn.Module, checkpoint_path: str | os.PathLike) -> None:
    """Check that a checkpoint loads weights-only and that its weights fit ``network`` key by key and shape by shape.

    Raises:
        FileNotFoundError: when the checkpoint does not exist.
        PreflightError: when it is not a weights-only state_dict (for example a pickled module), or its keys or
            shapes differ from the network's. A class-count mismatch in the output layer is named as such.
    """
    try:
        checkpoint = load_checkpoint(checkpoint_path)
        layout = state_dict_layout(checkpoint)
    except ValueError as error:
        raise PreflightError(str(error)) from error
    weights = checkpoint if layout is None else checkpoint[layout]
    expected = network.state_dict()
    missing = [key for key in expected if key not in weights]
    unexpected = [key for key in weights if key not in expected]
    mismatched = [
        (key, tuple(weights[key].shape), tuple(value.shape))
        for key, value in expected.items()
        if key in weights and tuple(weights[key].shape) != tuple(value.shape)
    ]
    if not (missing or unexpected or mismatched):
        return
    name = str(checkpoint_path)
    if mismatched and not (missing or unexpected):
        output_keys = list(expected)[-2:]
        in_output_layer = all(key in output_keys for key, _, _ in mismatched)
        only_first_dim = all(a[1:] == b[1:] and a[:1] != b[:1] for _, a, b in mismatched)
        if in_output_layer and only_first_dim:
            saved, built = mismatched[0][1][0], mismatched[0][2][0]
            raise PreflightError(
                f"Class count mismatch: the checkpoint {name!r} has {saved} output classes but the bundle's network "
                f"has {built} ({mismatched[0][0]}: {mismatched[0][1]} vs {mismatched[0][2]}). Set the bundle's class "
                f"count (num_classes / out_channels) back to {saved}, or revise a checkpoint trained with {built} "
                "classes."
            )
    details = [f"{key}: checkpoint {a} vs network {b}" for key, a, b in mismatched[:3]]
    if missing:
        details.append(f"missing in the checkpoint: {missing[:3]}")
    if unexpected:
        details.append(f"not in the network: {unexpected[:3]}")
    raise PreflightError(
        f"The checkpoint {name!r} does not fit the bundle's network ({len(mismatched)} shape mismatches, "
        f"{len(missing)} missing and {len(unexpected)} unexpected keys; {'; '.join(details)}). Revise the checkpoint "
        "that this network config was trained for, or undo the overrides that changed the network."
    )
