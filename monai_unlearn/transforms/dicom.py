# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Read DICOM header attributes by keyword into the data dictionary, so that forget rules can select by device.

This transform sits before the tagging transform in the flow transform -> engine -> inner search -> loss -> handlers:
``ReadDicomHeaderd`` writes ``data["Manufacturer"]`` (and any other keyword asked for) from the file header, and
``TagForgetd`` then evaluates a rule such as ``Manufacturer == 'SIEMENS'`` on it. Only the header is parsed
(``pydicom.dcmread(..., stop_before_pixels=True)``), so reading the attributes of a large series costs little.

Normalisation of the values (:func:`normalize_value`):

- text values lose their padding (leading and trailing spaces and NUL bytes), and ``case`` folds them to upper or
  lower case when set;
- a multi-valued attribute (value multiplicity above 1, such as ``ImageType`` or ``SoftwareVersions``) becomes a tuple
  of normalised values, or one string joined by ``separator`` when ``multi_value="join"``;
- ``DS`` and ``IS`` values become ``float`` and ``int``; person names become their DICOM string form;
- a value that is empty after stripping counts as missing when ``empty_as_missing`` is True (DICOM type 2 attributes
  are often present with an empty value, which means "unknown").

Patient attributes (:data:`PATIENT_ATTRIBUTES`, such as PatientID) are written as ``HMAC-SHA256(salt, value)``, the
hash the audit manifest uses for case IDs, so they can serve as case IDs without reaching logs or reports in clear.

Broken files get errors that name the file (:class:`DicomReadError`): a file that does not exist, a file that is not
DICOM, a file whose header is truncated. A file without the 128-byte preamble and ``DICM`` prefix (older ACR-NEMA
style files, or files written without a file meta header) is read again with ``force=True``. The result is kept only
when it contains a SOP Class UID or a Modality, which every DICOM image object has.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pydicom
from monai.config import KeysCollection
from monai.transforms import MapTransform
from pydicom.dataelem import RawDataElement
from pydicom.datadict import dictionary_VR, keyword_dict
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.uid import DeflatedExplicitVRLittleEndian
from pydicom.valuerep import PersonName

__all__ = [
    "DEVICE_ATTRIBUTES",
    "MISSING_POLICIES",
    "PATIENT_ATTRIBUTES",
    "DicomReadError",
    "MissingDicomAttributeError",
    "ReadDicomHeaderd",
    "ReadDicomHeaderD",
    "ReadDicomHeaderDict",
    "check_keywords",
    "normalize_value",
    "read_dicom_header",
]

logger = logging.getLogger(__name__)

#: The attributes that identify a device, a site and its software, read by default.
DEVICE_ATTRIBUTES = (
    "Manufacturer",
    "ManufacturerModelName",
    "StationName",
    "DeviceSerialNumber",
    "InstitutionName",
    "SoftwareVersions",
    "Modality",
)
MISSING_POLICIES = ("error", "default", "skip")
#: Attributes that identify a patient. ReadDicomHeaderd writes their salted hashes, never their values, and
#: SimpleITKReader leaves them out of the image metadata unless asked to keep them.
PATIENT_ATTRIBUTES = (
    "PatientName",
    "PatientID",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientBirthDate",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "IssuerOfPatientID",
    "AccessionNumber",
)
_UNDEFINED_LENGTH = 0xFFFFFFFF
# Elements of which at least one proves that a forced read found a DICOM data set and not arbitrary bytes.
_REQUIRED_FOR_FORCED_READ = ("SOPClassUID", "Modality")


class DicomReadError(ValueError):
    """A file that cannot be read as DICOM: not found, not DICOM, or truncated. The message names the file."""


class MissingDicomAttributeError(KeyError):
    """A requested attribute is absent (or empty) in a file's header and the missing policy is ``"error"``."""

    def __str__(self) -> str:  # KeyError would quote the whole message.
        return str(self.args[0]) if self.args else ""


def check_keywords(keywords: Sequence[str]) -> tuple[str, ...]:
    """Return the keywords as a tuple after checking each against the DICOM data dictionary.

    Raises:
        ValueError: for a keyword the DICOM dictionary does not define, with the closest known keywords.
    """
    if isinstance(keywords, str):
        keywords = (keywords,)
    checked = []
    for keyword in keywords:
        if keyword not in keyword_dict:
            close = difflib.get_close_matches(str(keyword), keyword_dict.keys(), n=3)
            hint = f" Did you mean {close}?" if close else ""
            raise ValueError(
                f"{keyword!r} is not a DICOM attribute keyword of the standard data dictionary.{hint} "
                "Keywords are case-sensitive, for example 'Manufacturer' or 'ManufacturerModelName'."
            )
        if dictionary_VR(keyword_dict[keyword]) == "SQ":
            raise ValueError(f"{keyword!r} is a sequence attribute; only attributes with plain values can be read.")
        checked.append(keyword)
    if not checked:
        raise ValueError("No DICOM attribute keyword given: name at least one, for example ['Manufacturer'].")
    return tuple(checked)


def normalize_value(
    value: Any, case: str | None = None, multi_value: str = "tuple", separator: str = "\\"
) -> Any:
    """Return a DICOM element value in plain Python types, without padding and with the chosen case and joining.

    Args:
        value: the element's value as pydicom returns it.
        case: ``"upper"``, ``"lower"`` or None (keep the case) for text values.
        multi_value: ``"tuple"`` (a tuple of values) or ``"join"`` (one string, values joined by ``separator``).
        separator: the separator of ``multi_value="join"``; DICOM itself separates values with a backslash.

    Raises:
        ValueError: for an unknown ``case`` or ``multi_value``.
    """
    if case not in (None, "upper", "lower"):
        raise ValueError(f"case must be 'upper', 'lower' or None, got {case!r}.")
    if multi_value not in ("tuple", "join"):
        raise ValueError(f"multi_value must be 'tuple' or 'join', got {multi_value!r}.")
    if isinstance(value, (MultiValue, list, tuple)):
        items = tuple(normalize_value(item, case=case) for item in value)
        if multi_value == "join":
            return separator.join(str(item) for item in items)
        return items
    if isinstance(value, PersonName):
        value = str(value)
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if isinstance(value, str):
        value = value.strip(" \x00\t\r\n")
        if case == "upper":
            value = value.upper()
        elif case == "lower":
            value = value.lower()
        return value
    if isinstance(value, float):  # pydicom's DSfloat is a float subclass
        return float(value)
    if isinstance(value, int):  # pydicom's IS is an int subclass
        return int(value)
    return value


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, tuple) and all(item == "" for item in value))


def _check_not_truncated(dataset: pydicom.Dataset, position: int, size: int, path: Path) -> None:
    """Raise when the header ended inside an element, which pydicom 3 drops without a warning."""
    if position < size or len(dataset) == 0:
        return  # the read stopped at the pixel data, so every header element was complete
    transfer_syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    if transfer_syntax == DeflatedExplicitVRLittleEndian:
        return  # element offsets refer to the inflated stream, not to the file
    last = dataset.get_item(list(dataset.keys())[-1])
    if not isinstance(last, RawDataElement) or last.length == _UNDEFINED_LENGTH:
        return
    end = last.value_tell + last.length
    if end < size:
        raise DicomReadError(
            f"The DICOM file {path} is truncated: its header ends inside an element after byte {end} of {size}. "
            "Copy the file again from its source, or leave it out of the datalist."
        )


def read_dicom_header(path: str | os.PathLike, force: bool | str = "auto") -> pydicom.Dataset:
    """Read the header of a DICOM file without its pixel data.

    Args:
        path: the DICOM file.
        force: ``"auto"`` (default) reads a file without preamble and ``DICM`` prefix again with pydicom's
            ``force=True`` and keeps the result only if it contains a SOP Class UID or a Modality; ``True`` keeps any
            forced read; ``False`` rejects such files.

    Raises:
        DicomReadError: when the file does not exist, is a folder, is not DICOM or is truncated inside its header.
    """
    path = Path(path)
    if not path.is_file():
        kind = "is a folder" if path.is_dir() else "does not exist"
        raise DicomReadError(f"The DICOM file {path} {kind}. Check the path in the datalist.")
    size = path.stat().st_size
    with open(path, "rb") as stream:
        try:
            dataset = pydicom.dcmread(stream, stop_before_pixels=True)
        except InvalidDicomError as error:
            if force is False:
                raise DicomReadError(
                    f"{path} has no DICOM preamble and 'DICM' prefix ({error}). If it is an ACR-NEMA or "
                    "headerless DICOM file, read it with force='auto' or force=True."
                ) from error
            stream.seek(0)
            try:
                dataset = pydicom.dcmread(stream, stop_before_pixels=True, force=True)
            except Exception as forced_error:  # pydicom raises many types on arbitrary bytes
                raise DicomReadError(
                    f"{path} is not a DICOM file: it has no DICOM preamble and reading it with force=True failed "
                    f"({type(forced_error).__name__}: {forced_error}). Remove it from the datalist."
                ) from forced_error
            if force == "auto" and not any(keyword in dataset for keyword in _REQUIRED_FOR_FORCED_READ):
                raise DicomReadError(
                    f"{path} is not a DICOM file: it has no DICOM preamble, and read with force=True it contains "
                    "neither a SOP Class UID nor a Modality. Remove it from the datalist, or pass force=True to "
                    "keep whatever pydicom parses."
                )
            logger.debug("Read %s without DICOM preamble using force=True.", path)
        except Exception as error:  # pydicom raises several types on corrupt files
            raise DicomReadError(
                f"{path} could not be read as DICOM ({type(error).__name__}: {error}). The file is corrupt or "
                "truncated: copy it again from its source, or leave it out of the datalist."
            ) from error
        position = stream.tell()
    _check_not_truncated(dataset, position, size, path)
    return dataset


class ReadDicomHeaderd(MapTransform):
    """Read DICOM attributes by keyword from the file at each key and write them into the dictionary.

    With one key, the attribute ``Manufacturer`` of the file at ``data["image"]`` goes to ``data["Manufacturer"]``.
    ``name_format`` changes the output key; it must contain ``{key}`` when several keys are read, so that their
    values do not overwrite each other.

    Args:
        keys: keys of the file paths.
        attributes: DICOM keywords to read (default :data:`DEVICE_ATTRIBUTES`).
        missing: what to do when an attribute is absent, or empty with ``empty_as_missing``: ``"error"`` raises
            :class:`MissingDicomAttributeError`, ``"default"`` writes ``default``, ``"skip"`` writes nothing and
            counts the sample in :attr:`missing_counts` (by keyword), with one warning per keyword.
        default: the value written by ``missing="default"``.
        empty_as_missing: treat a present but empty value as missing (default True).
        case: ``"upper"``, ``"lower"`` or None: case folding of text values (see :func:`normalize_value`).
        multi_value: ``"tuple"`` or ``"join"``: how multi-valued attributes are written.
        separator: separator of ``multi_value="join"``.
        force: how files without a DICOM preamble are read (see :func:`read_dicom_header`).
        name_format: output key, formatted with ``keyword`` and ``key``.
        salt: secret salt of the hashes of patient attributes (text or bytes, at least 16 bytes).
        salt_file: file holding that salt (see :func:`monai_unlearn.audit.read_salt`); used when ``salt`` is None.
        allow_missing_keys: do not raise when a key (the path) is absent from the dictionary.

    Raises:
        ValueError: at construction, for an unknown keyword, policy, case or joining mode, a ``name_format``
            without ``{key}`` for several keys, or a patient attribute requested without a salt.
        DicomReadError: at call time, for a file that is missing, not DICOM or truncated.
        MissingDicomAttributeError: at call time, for a missing attribute under ``missing="error"``.
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        attributes: Sequence[str] = DEVICE_ATTRIBUTES,
        missing: str = "error",
        default: Any = "",
        empty_as_missing: bool = True,
        case: str | None = None,
        multi_value: str = "tuple",
        separator: str = "\\",
        force: bool | str = "auto",
        name_format: str = "{keyword}",
        salt: str | bytes | None = None,
        salt_file: str | os.PathLike | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.attributes = check_keywords(attributes)
        if missing not in MISSING_POLICIES:
            raise ValueError(f"missing must be one of {MISSING_POLICIES}, got {missing!r}.")
        if force not in (True, False, "auto"):
            raise ValueError(f"force must be True, False or 'auto', got {force!r}.")
        if len(self.keys) > 1 and "{key}" not in name_format:
            raise ValueError(
                f"name_format {name_format!r} has no '{{key}}' but {len(self.keys)} keys are read, so their "
                "attributes would overwrite each other. Use for example name_format='{key}_{keyword}'."
            )
        normalize_value("", case=case, multi_value=multi_value)  # checks case and multi_value
        self.missing = missing
        self.default = default
        self.empty_as_missing = empty_as_missing
        self.case = case
        self.multi_value = multi_value
        self.separator = separator
        self.force = force
        self.name_format = name_format
        self.missing_counts: dict[str, int] = {}
        self._salt: bytes | None = None
        patient_attributes = sorted(set(self.attributes) & set(PATIENT_ATTRIBUTES))
        if patient_attributes:
            if salt is None and salt_file is None:
                raise ValueError(
                    f"{patient_attributes} identify a patient and are written only as salted hashes: pass salt=... "
                    "or salt_file=... (the bundle's secrets/audit_salt.txt) to ReadDicomHeaderd."
                )
            from monai_unlearn.audit import read_salt  # imported here: monai_unlearn.audit imports this package

            self._salt = read_salt(salt, salt_file)

    def read_attributes(self, path: str | os.PathLike) -> dict[str, Any]:
        """Return the normalised attributes of one file by keyword, applying the missing policy.

        Raises:
            DicomReadError: for a file that is missing, not DICOM or truncated.
            MissingDicomAttributeError: for a missing attribute under ``missing="error"``.
        """
        dataset = read_dicom_header(path, force=self.force)
        values: dict[str, Any] = {}
        for keyword in self.attributes:
            value = None
            if keyword in dataset:
                value = normalize_value(
                    dataset[keyword].value, case=self.case, multi_value=self.multi_value, separator=self.separator
                )
            if value is None or (self.empty_as_missing and _is_empty(value)):
                if self.missing == "error":
                    state = "empty" if keyword in dataset else "missing"
                    raise MissingDicomAttributeError(
                        f"The DICOM attribute {keyword} is {state} in {path}. Pass missing='default' (with a "
                        "default value) or missing='skip' to ReadDicomHeaderd to accept such files."
                    )
                if self.missing == "default":
                    values[keyword] = self.default
                    continue
                self.missing_counts[keyword] = self.missing_counts.get(keyword, 0) + 1
                if self.missing_counts[keyword] == 1:
                    logger.warning(
                        "The DICOM attribute %s is missing in %s and is not written; further files without it are "
                        "counted in ReadDicomHeaderd.missing_counts.",
                        keyword,
                        path,
                    )
                continue
            if keyword in PATIENT_ATTRIBUTES:
                from monai_unlearn.audit import salted_hash

                value = salted_hash(value, self._salt)
            values[keyword] = value
        return values

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            path = d[key]
            if not isinstance(path, (str, os.PathLike)):
                raise TypeError(
                    f"ReadDicomHeaderd reads the file path at key {key!r}, but it contains a {type(path).__name__}. "
                    "Put ReadDicomHeaderd before LoadImaged."
                )
            for keyword, value in self.read_attributes(path).items():
                d[self.name_format.format(keyword=keyword, key=key)] = value
        return d


ReadDicomHeaderD = ReadDicomHeaderDict = ReadDicomHeaderd
