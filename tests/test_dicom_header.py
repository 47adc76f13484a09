"""ReadDicomHeaderd on real DICOM files: the NIH GE and SIEMENS series of the data directory and pydicom's test files.

Budget: under 10 s.
"""

from __future__ import annotations

import collections
import shutil
from pathlib import Path

import pydicom
import pytest

from conftest import data_dir
from monai_unlearn.transforms import (
    DicomReadError,
    MissingDicomAttributeError,
    ReadDicomHeaderd,
    TagForgetd,
    normalize_value,
    read_dicom_header,
)

PYDICOM_TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
SALT = "a-test-salt-of-more-than-16-bytes"

# Manufacturer of pydicom's test files (pydicom 3.0) and of the pydicom-data package's files, one per vendor.
PYDICOM_MANUFACTURERS = {
    "CT_small.dcm": "GE MEDICAL SYSTEMS",
    "ExplVR_BigEnd.dcm": "G.E. Medical Systems",
    "JPEG-lossy.dcm": "GE Medical Systems",
    "MR_small.dcm": "TOSHIBA_MEC",
    "dicomdirtests/77654033/CR1/6154": "Agfa-Gevaert AG",
    "dicomdirtests/98892003/MR1/15820": "Philips Medical Systems, Inc.",
    "examples_overlay.dcm": "SIEMENS",
    "examples_palette.dcm": "Philips Medical Systems",
    "examples_ybr_color.dcm": "SonoSite, Inc.",
    "liver_1frame.dcm": "QIICR",
    "reportsi.dcm": "Kuratorium OFFIS e.V.",
    "waveform_ecg.dcm": "Mortara Instrument, Inc.",
}
PYDICOM_DATA_MANUFACTURERS = {
    "MR2_J2KI.dcm": "Philips",
    "RG3_J2KI.dcm": "FUJI PHOTO FILM CO. LTD.",
    "gdcm-US-ALOKA-16.dcm": "ALOKA CO., LTD.",
    "mlut_18.dcm": "OFFIS",
}


def pydicom_data_folder() -> Path:
    """Return the data folder of the pydicom-data package, or skip."""
    data_store = pytest.importorskip("data_store", reason="pydicom-data is not installed")
    return Path(data_store.__file__).parent / "data"


def nih_files(vendor_folder: str) -> list[Path]:
    files = sorted((data_dir() / "dicom_nih_ge_siemens" / vendor_folder).rglob("*.dcm"))
    if not files:
        pytest.skip(f"no DICOM files under {vendor_folder} in the data directory")
    return files


def test_nih_manufacturers_match_vendor_folders():
    reader = ReadDicomHeaderd(keys="image", attributes=["Manufacturer", "ManufacturerModelName"])
    counts = collections.Counter()
    vendors = (("20180918GE", "GE MEDICAL SYSTEMS", "DISCOVERY MR750"), ("20180918Si", "SIEMENS", "Skyra"))
    for folder, expected, model in vendors:
        for path in nih_files(folder):
            values = reader({"image": str(path)})
            manufacturer = values["Manufacturer"]
            assert manufacturer == expected, f"{path} should be from {expected}, got {manufacturer!r}"
            assert values["ManufacturerModelName"] == model, f"{path}: model {values['ManufacturerModelName']!r}"
            counts[values["Manufacturer"]] += 1
    assert counts == {"GE MEDICAL SYSTEMS": 150, "SIEMENS": 8}, f"vendor counts differ from the data README: {counts}"


def test_nih_header_matches_full_read():
    reader = ReadDicomHeaderd(keys="image", missing="skip")
    for path in nih_files("20180918GE")[:5] + nih_files("20180918Si"):
        full = pydicom.dcmread(path)
        values = reader({"image": str(path)})
        for keyword in ("Manufacturer", "StationName", "InstitutionName", "Modality"):
            assert values[keyword] == str(full[keyword].value).strip(), f"{keyword} of {path} differs from a full read"


@pytest.mark.parametrize("name,expected", sorted(PYDICOM_MANUFACTURERS.items()))
def test_pydicom_test_file_manufacturer(name: str, expected: str):
    path = PYDICOM_TEST_FILES / name
    assert path.is_file(), f"pydicom test file {path} not found"
    values = ReadDicomHeaderd(keys="image", attributes=["Manufacturer"])({"image": str(path)})
    assert values["Manufacturer"] == expected


@pytest.mark.parametrize("name,expected", sorted(PYDICOM_DATA_MANUFACTURERS.items()))
def test_pydicom_data_file_manufacturer(name: str, expected: str):
    path = pydicom_data_folder() / name
    assert path.is_file(), f"pydicom-data file {path} not found"
    values = ReadDicomHeaderd(keys="image", attributes=["Manufacturer"])({"image": str(path)})
    assert values["Manufacturer"] == expected


def test_tag_forget_selects_siemens_from_headers():
    reader = ReadDicomHeaderd(keys="image", attributes=["Manufacturer"])
    tag = TagForgetd("Manufacturer == 'SIEMENS'")
    flags = collections.Counter()
    for path in nih_files("20180918GE") + nih_files("20180918Si"):
        flags[tag(reader({"image": str(path)}))["forget"]] += 1
    assert flags == {0: 150, 1: 8}, f"the rule should flag the 8 SIEMENS files only, got {flags}"


def test_header_read_skips_pixel_data(tmp_path: Path):
    source = PYDICOM_TEST_FILES / "CT_small.dcm"
    content = source.read_bytes()
    cut = tmp_path / "pixels_cut.dcm"
    cut.write_bytes(content[:-5000])  # drop the end of the pixel data only
    values = ReadDicomHeaderd(keys="image", attributes=["Manufacturer"])({"image": str(cut)})
    assert values["Manufacturer"] == "GE MEDICAL SYSTEMS", "the header must be read without touching the pixels"


def test_normalize_value_padding_case_and_multi_value():
    assert normalize_value("  SIEMENS \x00") == "SIEMENS"
    assert normalize_value("Siemens ", case="upper") == "SIEMENS"
    assert normalize_value("Siemens", case="lower") == "siemens"
    image_type = pydicom.multival.MultiValue(str, ["ORIGINAL ", "PRIMARY", "M", "MOSAIC"])
    assert normalize_value(image_type) == ("ORIGINAL", "PRIMARY", "M", "MOSAIC")
    assert normalize_value(image_type, multi_value="join") == "ORIGINAL\\PRIMARY\\M\\MOSAIC"
    assert normalize_value(image_type, multi_value="join", separator="|") == "ORIGINAL|PRIMARY|M|MOSAIC"


def test_multi_valued_attribute_of_real_mosaic():
    path = nih_files("20180918Si")[0]
    values = ReadDicomHeaderd(keys="image", attributes=["ImageType"], case="lower")({"image": str(path)})
    assert isinstance(values["ImageType"], tuple), f"ImageType should be a tuple, got {values['ImageType']!r}"
    assert "mosaic" in values["ImageType"], f"a SIEMENS mosaic's ImageType should contain MOSAIC: {values['ImageType']}"


def test_missing_attribute_policies():
    path = str(PYDICOM_TEST_FILES / "MR_small.dcm")  # has no BodyPartExamined attribute
    assert "BodyPartExamined" not in pydicom.dcmread(path, stop_before_pixels=True)
    with pytest.raises(MissingDicomAttributeError, match=r"BodyPartExamined is missing in .*MR_small\.dcm"):
        ReadDicomHeaderd(keys="image", attributes=["BodyPartExamined"])({"image": path})

    with_default = ReadDicomHeaderd(keys="image", attributes=["BodyPartExamined"], missing="default", default="n/a")
    assert with_default({"image": path})["BodyPartExamined"] == "n/a"

    skipping = ReadDicomHeaderd(keys="image", attributes=["BodyPartExamined", "Manufacturer"], missing="skip")
    for _ in range(3):
        values = skipping({"image": path})
    assert "BodyPartExamined" not in values, "missing='skip' must not write the attribute"
    assert values["Manufacturer"] == "TOSHIBA_MEC"
    assert skipping.missing_counts == {"BodyPartExamined": 3}


def test_empty_attribute_counts_as_missing(tmp_path: Path):
    dataset = pydicom.dcmread(PYDICOM_TEST_FILES / "CT_small.dcm")
    dataset.StationName = ""
    path = tmp_path / "empty_station.dcm"
    dataset.save_as(path)
    with pytest.raises(MissingDicomAttributeError, match="StationName is empty"):
        ReadDicomHeaderd(keys="image", attributes=["StationName"])({"image": str(path)})
    kept = ReadDicomHeaderd(keys="image", attributes=["StationName"], empty_as_missing=False)({"image": str(path)})
    assert kept["StationName"] == ""


def test_unknown_keyword_rejected_with_suggestion():
    with pytest.raises(ValueError, match=r"'Manufacturor' is not a DICOM attribute keyword.*Manufacturer"):
        ReadDicomHeaderd(keys="image", attributes=["Manufacturor"])


def test_truncated_header_rejected(tmp_path: Path):
    path = tmp_path / "truncated.dcm"
    path.write_bytes((PYDICOM_TEST_FILES / "CT_small.dcm").read_bytes()[:600])
    with pytest.raises(DicomReadError, match=r"truncated\.dcm is truncated"):
        ReadDicomHeaderd(keys="image", attributes=["Manufacturer"])({"image": str(path)})


def test_not_dicom_rejected(tmp_path: Path):
    path = tmp_path / "notes.dcm"
    path.write_text("this is a text file, not DICOM\n" * 20)
    with pytest.raises(DicomReadError, match=r"notes\.dcm is not a DICOM file"):
        ReadDicomHeaderd(keys="image", attributes=["Manufacturer"])({"image": str(path)})


def test_missing_file_rejected(tmp_path: Path):
    with pytest.raises(DicomReadError, match=r"absent\.dcm does not exist"):
        read_dicom_header(tmp_path / "absent.dcm")


def test_file_without_preamble_read_by_force(tmp_path: Path):
    path = tmp_path / "no_preamble.dcm"
    path.write_bytes((PYDICOM_TEST_FILES / "CT_small.dcm").read_bytes()[132:])  # drop preamble and 'DICM'
    values = ReadDicomHeaderd(keys="image", attributes=["Manufacturer"])({"image": str(path)})
    assert values["Manufacturer"] == "GE MEDICAL SYSTEMS", "force='auto' should read a file without preamble"
    with pytest.raises(DicomReadError, match=r"no_preamble\.dcm has no DICOM preamble"):
        ReadDicomHeaderd(keys="image", attributes=["Manufacturer"], force=False)({"image": str(path)})


def test_patient_attributes_written_as_salted_hashes():
    path = str(nih_files("20180918Si")[0])
    with pytest.raises(ValueError, match="identify a patient.*salt"):
        ReadDicomHeaderd(keys="image", attributes=["PatientID"])
    reader = ReadDicomHeaderd(keys="image", attributes=["PatientName", "PatientID"], salt=SALT)
    values = reader({"image": path})
    assert "Regression" not in values["PatientName"], "the patient name must not appear in clear"
    assert values["PatientID"] != "DEV", "the patient ID must not appear in clear"
    assert len(values["PatientID"]) == 64, f"expected a 64-digit HMAC-SHA256, got {values['PatientID']!r}"


def test_several_keys_need_key_in_name_format(tmp_path: Path):
    with pytest.raises(ValueError, match=r"name_format '\{keyword\}' has no '\{key\}'"):
        ReadDicomHeaderd(keys=["image", "reference"], attributes=["Manufacturer"])
    second = tmp_path / "second.dcm"
    shutil.copy(PYDICOM_TEST_FILES / "MR_small.dcm", second)
    reader = ReadDicomHeaderd(keys=["image", "reference"], attributes=["Manufacturer"], name_format="{key}_{keyword}")
    values = reader({"image": str(PYDICOM_TEST_FILES / "CT_small.dcm"), "reference": str(second)})
    assert values["image_Manufacturer"] == "GE MEDICAL SYSTEMS"
    assert values["reference_Manufacturer"] == "TOSHIBA_MEC"


@pytest.mark.parametrize(
    "rule,expected_siemens,expected_ge",
    [
        ("Manufacturer == 'siemens'", 8, 0),
        ("StationName in {'AWP45160', 'other_station'}", 8, 0),
        ("matches(ManufacturerModelName, '^skyra$')", 8, 0),
        ("Manufacturer == 'SIEMENS' and InstitutionName == 'NIH'", 8, 0),
        ("not Manufacturer == 'SIEMENS' or StationName == 'AWP45160'", 8, 150),
    ],
)
def test_device_rules_on_real_headers(rule: str, expected_siemens: int, expected_ge: int):
    attributes = ["Manufacturer", "ManufacturerModelName", "StationName", "InstitutionName"]
    reader = ReadDicomHeaderd(keys="image", attributes=attributes)
    tag = TagForgetd(rule)
    flagged = collections.Counter()
    for path in nih_files("20180918GE") + nih_files("20180918Si"):
        entry = tag(reader({"image": str(path)}))
        flagged[entry["Manufacturer"]] += entry["forget"]
    assert flagged["SIEMENS"] == expected_siemens, f"rule {rule!r} flagged {flagged['SIEMENS']} SIEMENS files"
    ge_count = flagged["GE MEDICAL SYSTEMS"]
    assert ge_count == expected_ge, f"rule {rule!r} flagged {ge_count} GE files"
