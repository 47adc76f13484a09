# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Transforms: forget rules and the tagging transform that writes the forget flag of each sample."""

from __future__ import annotations

from .rules import (
    COMPARISONS,
    AllOf,
    AnyOf,
    CaseIdIn,
    FieldCompare,
    FieldEquals,
    FieldIn,
    FieldMatches,
    ForgetRule,
    LabelIn,
    MissingFieldError,
    Not,
    as_rule,
    parse_rule,
    split_datalist,
)
from .tag_forget import TagForgetd, TagForgetD, TagForgetDict
from .label_region import ForgetLabelRegiond, ForgetLabelRegionD, ForgetLabelRegionDict, label_region
from .percentile_rule import PercentileCompare

__all__ = [
    "COMPARISONS",
    "AllOf",
    "AnyOf",
    "CaseIdIn",
    "FieldCompare",
    "FieldEquals",
    "FieldIn",
    "FieldMatches",
    "ForgetRule",
    "LabelIn",
    "MissingFieldError",
    "Not",
    "TagForgetD",
    "TagForgetDict",
    "TagForgetd",
    "as_rule",
    "parse_rule",
    "split_datalist",
    "ForgetLabelRegionD",
    "ForgetLabelRegionDict",
    "ForgetLabelRegiond",
    "PercentileCompare",
    "label_region",
]

from .dicom import (  # noqa: E402
    DEVICE_ATTRIBUTES,
    DicomReadError,
    PATIENT_ATTRIBUTES,
    MissingDicomAttributeError,
    ReadDicomHeaderD,
    ReadDicomHeaderd,
    ReadDicomHeaderDict,
    normalize_value,
    read_dicom_header,
)
from .slices import SelectSliceD, SelectSliced, SelectSliceDict  # noqa: E402

__all__ += [
    "DEVICE_ATTRIBUTES",
    "DicomReadError",
    "MissingDicomAttributeError",
    "PATIENT_ATTRIBUTES",
    "ReadDicomHeaderD",
    "ReadDicomHeaderDict",
    "ReadDicomHeaderd",
    "SelectSliceD",
    "SelectSliceDict",
    "SelectSliced",
    "normalize_value",
    "read_dicom_header",
]
