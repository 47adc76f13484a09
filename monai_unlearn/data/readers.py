# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""A MONAI ``ImageReader`` on SimpleITK for DICOM files, DICOM series folders and NIfTI.

It loads the images that the forget rules of a device revision read (``LoadImage(reader=SimpleITKReader())``) and
puts the DICOM header attributes into the image metadata by keyword (``meta["Manufacturer"]``), without the large
``itk`` package that MONAI's ``ITKReader`` needs. SimpleITK decodes the compressed transfer syntaxes through the GDCM
library built into its wheels (JPEG baseline and lossless, JPEG-LS, JPEG 2000, RLE).

Array layout follows MONAI's ``ITKReader``: spatial axes in ``(x, y, z)`` order (SimpleITK's numpy view reversed), a
4x4 affine in RAS coordinates (``affine_lps_to_ras=True``, the default) or in DICOM's LPS, and colour channels last.
A single-frame DICOM file gives a 2-D image, a multi-frame file or a series folder a 3-D volume.

SIEMENS mosaics (one file holding the slices of a volume as tiles, marked by ``MOSAIC`` in ImageType or by the
private attribute (0019,100A) NumberOfImagesInMosaic) are split into a volume of their slices with ``mosaic="split"``
(default), or rejected with ``mosaic="reject"``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import SimpleITK as sitk
from monai.data.image_reader import ImageReader
from monai.utils import MetaKeys, SpaceKeys
from pydicom.datadict import keyword_for_tag

from ..transforms.dicom import PATIENT_ATTRIBUTES, DicomReadError, normalize_value, read_dicom_header
from .modality import split_mosaic

__all__ = ["SimpleITKReader", "DICOM_SUFFIXES", "VOLUME_SUFFIXES"]

logger = logging.getLogger(__name__)

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")
MOSAIC_MODES = ("split", "reject")
_MOSAIC_TAG = (0x0019, 0x100A)
# Header attributes that are never copied into the metadata: the pixel data and its large companions.
_SKIPPED_KEYWORDS = {"PixelData", "FloatPixelData", "DoubleFloatPixelData", "OverlayData", "CurveData"}


def _is_dicom_file(path: Path) -> bool:
    """Check the 128-byte preamble and ``DICM`` prefix, or a DICOM suffix."""
    if path.name.lower().endswith(DICOM_SUFFIXES):
        return True
    try:
        with open(path, "rb") as stream:
            stream.seek(128)
            return stream.read(4) == b"DICM"
    except OSError:
        return False


def _header_attributes(dataset: pydicom.Dataset, keep_patient_attributes: bool) -> dict[str, Any]:
    """Return the header's standard attributes by keyword, normalised, without sequences and pixel data."""
    attributes: dict[str, Any] = {}
    skipped = _SKIPPED_KEYWORDS if keep_patient_attributes else _SKIPPED_KEYWORDS | set(PATIENT_ATTRIBUTES)
    for element in dataset:
        keyword = keyword_for_tag(element.tag)
        if not keyword or keyword in skipped or element.VR == "SQ":
            continue
        try:
            value = normalize_value(element.value)
        except Exception:  # a malformed value of one attribute must not stop the image from loading
            logger.debug("Attribute %s could not be decoded and is left out of the metadata.", keyword)
            continue
        if isinstance(value, bytes):
            continue
        attributes[keyword] = value
    return attributes


def _mosaic_count(dataset: pydicom.Dataset) -> int | None:
    """Return the number of slices of a SIEMENS mosaic, or None when the file is not a mosaic."""
    image_type = [str(value).upper() for value in dataset.get("ImageType", [])]
    element = dataset.get(_MOSAIC_TAG)
    if element is None:
        return None if "MOSAIC" not in image_type else -1
    value = element.value
    if isinstance(value, bytes):
        value = int.from_bytes(value[:2], "little")  # US, stored as raw bytes when the VR is unknown
    return int(value)


class SimpleITKReader(ImageReader):
    """Load DICOM files, DICOM series folders and NIfTI (and other SimpleITK formats) for ``LoadImage``.

    Args:
        series_uid: the SeriesInstanceUID to load from a folder that contains several series. Without it such a folder
            raises an error that lists the UIDs found.
        mosaic: ``"split"`` turns a SIEMENS mosaic into a volume of its slices; ``"reject"`` raises instead.
        affine_lps_to_ras: convert the affine from DICOM's LPS to RAS, as MONAI's ``ITKReader`` does by default.
        dicom_metadata: copy the DICOM header attributes into the metadata by keyword.
        keep_patient_attributes: also copy the attributes that identify a patient (PatientName, PatientID and the
            others of :data:`~monai_unlearn.transforms.PATIENT_ATTRIBUTES`); by default they are left out, so that
            handlers that log or save metadata never see them.
        dtype: dtype of the returned arrays (default: the file's pixel type, unchanged).

    Raises:
        ValueError: at construction, for an unknown ``mosaic`` mode.
    """

    def __init__(
        self,
        series_uid: str | None = None,
        mosaic: str = "split",
        affine_lps_to_ras: bool = True,
        dicom_metadata: bool = True,
        keep_patient_attributes: bool = False,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        if mosaic not in MOSAIC_MODES:
            raise ValueError(f"mosaic must be one of {MOSAIC_MODES}, got {mosaic!r}.")
        self.series_uid = series_uid
        self.mosaic = mosaic
        self.affine_lps_to_ras = affine_lps_to_ras
        self.dicom_metadata = dicom_metadata
        self.keep_patient_attributes = keep_patient_attributes
        self.dtype = dtype

    def verify_suffix(self, filename: Sequence[os.PathLike | str] | os.PathLike | str) -> bool:
        """Return True for DICOM files (by suffix or ``DICM`` prefix), DICOM folders and SimpleITK volume formats."""
        names = [filename] if isinstance(filename, (str, os.PathLike)) else list(filename)
        for name in names:
            path = Path(name)
            if path.is_dir() or path.name.lower().endswith(VOLUME_SUFFIXES):
                continue
            if not (path.is_file() and _is_dicom_file(path)) and not path.name.lower().endswith(DICOM_SUFFIXES):
                return False
        return True

    def read(self, data: Sequence[os.PathLike | str] | os.PathLike | str, **kwargs: Any) -> Any:
        """Read one image, or a list of images to stack as channels, and return ``(array, metadata)`` pairs.

        Raises:
            FileNotFoundError: for a path that does not exist.
            DicomReadError: for a DICOM file that cannot be read, with the file in the message.
            ValueError: for a folder without a DICOM series, or with several and no ``series_uid``, for a series with
                several files at one slice position (a time series), and for a mosaic under ``mosaic="reject"``.
        """
        names = [data] if isinstance(data, (str, os.PathLike)) else list(data)
        images = [self._read_one(Path(name)) for name in names]
        return images if len(images) > 1 else images[0]

    def get_data(self, img: Any) -> tuple[np.ndarray, dict]:
        """Return the array and the metadata of what :meth:`read` returned; several images are stacked as channels.

        Raises:
            ValueError: when images to stack have different shapes.
        """
        images = img if isinstance(img, list) else [img]
        arrays = [array for array, _ in images]
        meta = dict(images[0][1])
        if len(arrays) == 1:
            return arrays[0], meta
        shapes = {array.shape for array in arrays}
        if len(shapes) > 1:
            raise ValueError(
                f"Images to stack as channels have different shapes {sorted(shapes)}; resample them first."
            )
        meta[MetaKeys.ORIGINAL_CHANNEL_DIM] = 0
        return np.stack(arrays, axis=0), meta

    # -----------------------------------------------------------------------------------------------------------------

    def _read_one(self, path: Path) -> tuple[np.ndarray, dict]:
        if path.is_dir():
            return self._read_series(path)
        if not path.is_file():
            raise FileNotFoundError(f"Image file {path} does not exist. Check the path in the datalist.")
        if _is_dicom_file(path):
            return self._read_dicom_file(path)
        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError as error:
            raise ValueError(f"SimpleITK could not read {path}: {_sitk_reason(error)}") from error
        return self._to_array(image, {}, single_frame_dicom=False)

    def _read_dicom_file(self, path: Path) -> tuple[np.ndarray, dict]:
        dataset = read_dicom_header(path)
        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError as error:
            raise DicomReadError(
                f"SimpleITK (GDCM) could not read the pixel data of the DICOM file {path}: {_sitk_reason(error)}. "
                f"{_diagnose_pixel_data(path, dataset)}"
            ) from error
        attributes = _header_attributes(dataset, self.keep_patient_attributes) if self.dicom_metadata else {}
        count = _mosaic_count(dataset)
        if count is not None:
            return self._split_mosaic(image, count, attributes, path, dataset)
        return self._to_array(image, attributes, single_frame_dicom=True)

    def _read_series(self, folder: Path) -> tuple[np.ndarray, dict]:
        uids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
        if not uids:
            raise ValueError(f"The folder {folder} contains no DICOM series. Check the path, or list the files.")
        uid = self.series_uid
        if uid is None and len(uids) > 1:
            raise ValueError(
                f"The folder {folder} contains {len(uids)} DICOM series ({', '.join(sorted(uids))}). Pass "
                "SimpleITKReader(series_uid=...) to load one of them, or put each series in its own folder."
            )
        if uid is None:
            uid = uids[0]
        elif uid not in uids:
            raise ValueError(f"Series {uid} is not in {folder}; the folder contains {', '.join(sorted(uids))}.")
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)
        dataset = read_dicom_header(files[0])
        _check_one_file_per_position(files, uid, folder)
        if _mosaic_count(dataset) is not None:
            raise ValueError(
                f"Series {uid} in {folder} consists of SIEMENS mosaics, which hold a whole volume per file. "
                "Load each mosaic file on its own: the reader splits it into slices."
            )
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(files)
        try:
            image = reader.Execute()
        except RuntimeError as error:
            raise DicomReadError(f"SimpleITK could not read series {uid} in {folder}: {_sitk_reason(error)}") from error
        attributes = _header_attributes(dataset, self.keep_patient_attributes) if self.dicom_metadata else {}
        attributes["number_of_files"] = len(files)
        return self._to_array(image, attributes, single_frame_dicom=False)

    def _split_mosaic(
        self, image: sitk.Image, count: int, attributes: dict, path: Path, dataset: pydicom.Dataset
    ) -> tuple[np.ndarray, dict]:
        if self.mosaic == "reject":
            raise ValueError(
                f"{path} is a SIEMENS mosaic. Pass SimpleITKReader(mosaic='split') to load it as a volume of its "
                "slices, or convert it with a DICOM converter such as dcm2niix."
            )
        if count < 1:
            raise ValueError(
                f"{path} is marked MOSAIC in ImageType but has no NumberOfImagesInMosaic (0019,100A), so its slices "
                "cannot be located. Convert it with a DICOM converter such as dcm2niix."
            )
        pixels = sitk.GetArrayFromImage(image)  # (1, rows, columns)
        slices = split_mosaic(pixels.reshape(pixels.shape[-2:]), count)
        volume = np.stack(slices, axis=-1).transpose(1, 0, 2)  # (columns, rows, slices) = (x, y, z)
        slice_spacing = dataset.get("SpacingBetweenSlices") or dataset.get("SliceThickness") or 1.0
        spacing = list(image.GetSpacing()[:2]) + [float(slice_spacing)]
        # NOTE: the origin is the mosaic's ImagePositionPatient, not the first slice's position, and the slice
        # normal is taken from the in-plane directions; resample with care when the geometry matters.
        direction = np.array(image.GetDirection(), dtype=np.float64).reshape(3, 3)
        meta = self._metadata(volume.shape, spacing, direction, np.array(image.GetOrigin()), attributes)
        meta["mosaic_slices"] = count
        return self._cast(volume), meta

    def _to_array(self, image: sitk.Image, attributes: dict, single_frame_dicom: bool) -> tuple[np.ndarray, dict]:
        array = sitk.GetArrayFromImage(image)
        channels = image.GetNumberOfComponentsPerPixel()
        spatial_dims = image.GetDimension()
        # SimpleITK's numpy view is (z, y, x[, c]); MONAI's ITKReader returns (x, y, z[, c]).
        order = tuple(reversed(range(spatial_dims))) + ((spatial_dims,) if channels > 1 else ())
        array = array.transpose(order)
        spacing = list(image.GetSpacing())
        origin = np.array(image.GetOrigin(), dtype=np.float64)
        direction = np.array(image.GetDirection(), dtype=np.float64).reshape(spatial_dims, spatial_dims)
        if single_frame_dicom and spatial_dims == 3 and array.shape[2] == 1:
            array = array[:, :, 0]  # a single-frame DICOM file is a 2-D image
        meta = self._metadata(array.shape[: (array.ndim - (channels > 1))], spacing, direction, origin, attributes)
        meta[MetaKeys.ORIGINAL_CHANNEL_DIM] = -1 if channels > 1 else "no_channel"
        return self._cast(array), meta

    def _metadata(
        self, spatial_shape: Sequence[int], spacing: Sequence[float], direction: np.ndarray, origin: np.ndarray,
        attributes: dict,
    ) -> dict:
        dims = direction.shape[0]
        affine = np.eye(4)
        affine[:dims, :dims] = direction * np.asarray(spacing[:dims], dtype=np.float64)
        affine[:dims, 3] = origin[:dims]
        if self.affine_lps_to_ras:
            affine[:2] *= -1  # flip x and y: LPS to RAS
        meta = dict(attributes)
        meta[MetaKeys.SPATIAL_SHAPE] = np.asarray(spatial_shape)
        meta[MetaKeys.AFFINE] = affine
        meta[MetaKeys.ORIGINAL_AFFINE] = affine.copy()
        meta[MetaKeys.SPACE] = SpaceKeys.RAS if self.affine_lps_to_ras else SpaceKeys.LPS
        meta[MetaKeys.ORIGINAL_CHANNEL_DIM] = "no_channel"
        return meta

    def _cast(self, array: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(array if self.dtype is None else array.astype(self.dtype))


def _check_one_file_per_position(files: Sequence[str], uid: str, folder: Path) -> None:
    """Raise when several files of a series share a slice position, as in a time series (fMRI, perfusion).

    SimpleITK would stack such files into one volume with a wrong geometry, without an error.
    """
    positions = set()
    for name in files:
        position = read_dicom_header(name).get("ImagePositionPatient")
        if position is None:
            return  # without positions the geometry cannot be checked; SimpleITK orders the files by its own rules
        positions.add(tuple(round(float(value), 3) for value in position))
    if len(positions) < len(files):
        raise ValueError(
            f"Series {uid} in {folder} has {len(files)} files at only {len(positions)} slice positions, so it is a "
            "time series or holds repeated acquisitions. Load the files of one time point as a list or in a folder "
            "of their own, or convert the series to 4-D NIfTI with a DICOM converter such as dcm2niix."
        )


def _sitk_reason(error: RuntimeError) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def _diagnose_pixel_data(path: Path, dataset: pydicom.Dataset) -> str:
    """Return a hint on why the pixels failed: truncated pixel data, or an unsupported transfer syntax."""
    transfer_syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    if transfer_syntax is not None and transfer_syntax.is_compressed:
        return (
            f"Its transfer syntax is {transfer_syntax.name}; decompress it first (for example with "
            "pydicom's Dataset.decompress and the pylibjpeg decoders, or gdcmconv --raw)."
        )
    try:
        rows, columns = int(dataset.Rows), int(dataset.Columns)
        frames = int(dataset.get("NumberOfFrames", 1) or 1)
        expected = rows * columns * frames * int(dataset.get("SamplesPerPixel", 1)) * int(dataset.BitsAllocated) // 8
    except (AttributeError, TypeError, ValueError):
        return "The file may be corrupt: copy it again from its source."
    available = path.stat().st_size
    return (
        f"Its header describes {expected} bytes of pixel data and the whole file has {available} bytes; a file "
        "with less pixel data than that is truncated: copy it again from its source."
    )
