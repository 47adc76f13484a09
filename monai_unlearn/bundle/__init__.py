# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Bundle support: layout detection, unlearning overlays, preflight checks, metadata versioning, the revise workflow."""

from __future__ import annotations

from .layout import (
    BundleLayout,
    BundleLayoutError,
    detect_layout,
    find_training_configs,
    get_config_item,
    has_config_item,
    load_bundle_config,
)
from .metadata import (
    DEFAULT_METADATA_SCHEMA,
    bump_version,
    describe_rule_for_record,
    format_changelog_entry,
    record_revision,
    verify_bundle_metadata,
)
from .overlay import OVERLAY_REQUEST_KEY, REVISE_RUN_ID, ForgetRequest, build_overlay, check_overlay, write_overlay
from .preflight import PreflightError, PreflightSummary, check_checkpoint_fits, check_datalist, check_dicom_file
from .workflow import RevisionError, RevisionResult, attach_handlers, bundle_command, find_resume_checkpoint, revise

__all__ = [
    "BundleLayout",
    "BundleLayoutError",
    "DEFAULT_METADATA_SCHEMA",
    "ForgetRequest",
    "OVERLAY_REQUEST_KEY",
    "PreflightError",
    "PreflightSummary",
    "REVISE_RUN_ID",
    "RevisionError",
    "RevisionResult",
    "attach_handlers",
    "build_overlay",
    "bump_version",
    "bundle_command",
    "check_checkpoint_fits",
    "check_datalist",
    "check_dicom_file",
    "check_overlay",
    "describe_rule_for_record",
    "detect_layout",
    "find_resume_checkpoint",
    "find_training_configs",
    "format_changelog_entry",
    "get_config_item",
    "has_config_item",
    "load_bundle_config",
    "record_revision",
    "revise",
    "verify_bundle_metadata",
    "write_overlay",
]
