"""SimpleITKReader through MONAI's LoadImage on real files: DICOM files, mosaics, series, NIfTI, compressed DICOM.

The pixel values are compared with an independent decoder: pydicom with the pylibjpeg plugins. Budget: under 15 s.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel
import numpy as np
import pydicom
import pytest
from monai.transforms import LoadImage
from pydicom.pixels import apply_modality_lut

from conftest import data_dir
from monai_unlearn.data import SimpleITKReader, split_mosaic
from monai_unlearn.transforms import DicomReadError

PYDICOM_TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
# Losslessly compressed files of pydicom and pydicom-data: JPEG-LS, RLE, JPEG lossless, JPEG 2000 lossless.
LOSSLESS_FILES = [
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_RLE.dcm",
    "SC_rgb_rle.dcm",
    "SC_rgb_jpeg_gdcm.dcm",
    "emri_small_jpeg_2k_lossless.dcm",
    "GDCMJ2K_TextGBR.dcm",
    "MR2_J2KR.dcm",
]


def find_test_file(name: str) -> Path:
    """Return a test file of pydicom or of the pydicom-data package, looked up locally, or skip."""
    candidates = [PYDICOM_TEST_FILES / name]
    try:
        import data_store

        candidates.append(Path(data_store.__file__).parent / "data" / name)
    except ImportError:
        pass
    for path in candidates:
        if path.is_file():
            return path
    pytest.skip(f"test file {name} is not installed (pydicom-data provides it)")


def nih_folder(vendor: str) -> Path:
    folder = data_dir() / "dicom_nih_ge_siemens" / vendor
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    return folder


def load(path: Path | str, **reader_arguments):
    return LoadImage(reader=SimpleITKReader(**reader_arguments), image_only=True)(str(path))


def reference_pixels(path: Path) -> np.ndarray:
    """Decode with pydicom (and pylibjpeg for compressed data) and apply the modality LUT as SimpleITK does."""
    dataset = pydicom.dcmread(path)
    pixels = dataset.pixel_array
    if dataset.get("PhotometricInterpretation", "").startswith("MONOCHROME"):
        pixels = apply_modality_lut(pixels, dataset)
    return np.asarray(pixels, dtype=np.float64)


def test_ge_file_loads_with_metadata():
    path = sorted(nih_folder("20180918GE").rglob("*.dcm"))[0]
    image = load(path)
    assert tuple(image.shape) == (64, 64), f"a single-slice GE file should load as 64x64, got {tuple(image.shape)}"
    assert image.meta["Manufacturer"] == "GE MEDICAL SYSTEMS"
    assert image.meta["ManufacturerModelName"] == "DISCOVERY MR750"
    expected = reference_pixels(path).T  # pydicom is (rows, columns); MONAI's ITK layout is (x, y)
    np.testing.assert_array_equal(np.asarray(image, dtype=np.float64), expected)


def test_patient_attributes_left_out_of_metadata():
    path = sorted(nih_folder("20180918GE").rglob("*.dcm"))[0]
    meta = load(path).meta
    assert "PatientName" not in meta, "the patient name must be left out of the metadata by default"
    assert "PatientID" not in meta, "the patient ID must be left out of the metadata by default"
    kept = load(path, keep_patient_attributes=True).meta
    assert kept["PatientID"] == "DEV", "keep_patient_attributes=True should keep them"


def test_siemens_mosaic_split_into_slices():
    path = sorted(nih_folder("20180918Si").rglob("*.dcm"))[0]
    volume = load(path)
    assert tuple(volume.shape) == (72, 72, 5), f"the 216x216 mosaic holds 5 slices of 72x72, got {tuple(volume.shape)}"
    assert volume.meta["Manufacturer"] == "SIEMENS"
    tiles = split_mosaic(pydicom.dcmread(path).pixel_array, 5)
    for index, tile in enumerate(tiles):
        np.testing.assert_array_equal(np.asarray(volume[..., index]), tile.T, err_msg=f"slice {index} differs")


def test_siemens_mosaic_rejected_on_request():
    path = sorted(nih_folder("20180918Si").rglob("*.dcm"))[0]
    with pytest.raises(ValueError, match=r"is a SIEMENS mosaic"):
        SimpleITKReader(mosaic="reject").read(str(path))


def test_series_folder_loads_as_volume(tmp_path: Path):
    first_time_point = sorted(nih_folder("20180918GE").rglob("*.dcm"))[:15]  # files 1-15: the 15 slice positions
    for path in first_time_point:
        shutil.copy(path, tmp_path / path.name)
    volume = load(tmp_path)
    assert tuple(volume.shape) == (64, 64, 15), f"got {tuple(volume.shape)}"
    assert volume.meta["Manufacturer"] == "GE MEDICAL SYSTEMS"
    assert volume.meta["number_of_files"] == 15
    slice_spacing = float(np.linalg.norm(np.asarray(volume.affine)[:3, 2]))
    assert abs(slice_spacing - 5.0) < 0.01, f"the slices are 5 mm apart, the affine gives {slice_spacing:.3f} mm"


def test_time_series_folder_rejected():
    folder = nih_folder("20180918GE") / "mr_0004"
    with pytest.raises(ValueError, match=r"has 150 files at only 15 slice positions"):
        SimpleITKReader().read(str(folder))


def test_mixed_series_folder_names_uids(tmp_path: Path):
    ge_files = sorted(nih_folder("20180918GE").rglob("*.dcm"))[:3]
    for path in ge_files:
        shutil.copy(path, tmp_path / path.name)
    shutil.copy(PYDICOM_TEST_FILES / "MR_small.dcm", tmp_path / "other_series.dcm")
    ge_uid = pydicom.dcmread(ge_files[0], stop_before_pixels=True).SeriesInstanceUID
    other_uid = pydicom.dcmread(PYDICOM_TEST_FILES / "MR_small.dcm", stop_before_pixels=True).SeriesInstanceUID
    with pytest.raises(ValueError, match=rf"contains 2 DICOM series .*{ge_uid}.*series_uid") as error:
        SimpleITKReader().read(str(tmp_path))
    assert other_uid in str(error.value), "the error should list every series UID"
    volume = load(tmp_path, series_uid=ge_uid)
    assert tuple(volume.shape) == (64, 64, 3), f"series_uid should select the 3 GE files, got {tuple(volume.shape)}"


def test_nifti_matches_nibabel():
    path = sorted((data_dir() / "msd_hippocampus" / "images").glob("*.nii.gz"))[0]
    image = load(path)
    reference = nibabel.load(path)
    np.testing.assert_allclose(np.asarray(image, dtype=np.float64), reference.get_fdata(), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(image.affine), reference.affine, atol=1e-5)


@pytest.mark.parametrize("name", LOSSLESS_FILES)
def test_compressed_file_matches_pydicom(name: str):
    path = find_test_file(name)
    image = load(path)
    expected = reference_pixels(path)
    # pydicom returns (frames, rows, columns[, samples]); the reader (x, y[, z][, channels]).
    if expected.ndim == 3 and expected.shape[-1] == 3:
        expected = expected.transpose(1, 0, 2)
    elif expected.ndim == 3:
        expected = expected.transpose(2, 1, 0)
    else:
        expected = expected.T
    np.testing.assert_allclose(np.asarray(image, dtype=np.float64), expected, err_msg=f"{name} decodes differently")


def test_pixel_data_truncation_named(tmp_path: Path):
    path = tmp_path / "cut_pixels.dcm"
    path.write_bytes((PYDICOM_TEST_FILES / "CT_small.dcm").read_bytes()[:-5000])
    with pytest.raises(DicomReadError, match=r"cut_pixels\.dcm.*truncated"):
        SimpleITKReader().read(str(path))


def test_missing_file_named(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=r"absent\.nii\.gz does not exist"):
        SimpleITKReader().read(str(tmp_path / "absent.nii.gz"))


def test_unknown_mosaic_mode_rejected():
    with pytest.raises(ValueError, match="mosaic must be one of"):
        SimpleITKReader(mosaic="keep")


def test_metadata_off_keeps_2d_layout():
    path = sorted(nih_folder("20180918GE").rglob("*.dcm"))[0]
    image = load(path, dicom_metadata=False)
    assert tuple(image.shape) == (64, 64), f"a single-frame file should stay 2-D, got {tuple(image.shape)}"
    assert "Manufacturer" not in image.meta, "dicom_metadata=False should leave the header out"


def test_mosaic_slice_spacing_from_header():
    path = sorted(nih_folder("20180918Si").rglob("*.dcm"))[0]
    header = pydicom.dcmread(path, stop_before_pixels=True)
    expected = float(header.get("SpacingBetweenSlices") or header.SliceThickness)
    volume = load(path, dicom_metadata=False)
    slice_spacing = float(np.linalg.norm(np.asarray(volume.affine)[:3, 2]))
    assert abs(slice_spacing - expected) < 1e-3, f"slice spacing {slice_spacing} mm, header says {expected} mm"
