# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Ignite handlers that observe an unlearning run: evaluations, membership inference, reports, audit manifests,
checkpoint keeping and timing."""

from __future__ import annotations

from .audit_manifest import AuditManifest, package_versions
from .evaluation_record import EvaluationRecord, get_evaluation_record
from .membership_inference import MembershipInference
from .report import UnlearningReport, format_report_markdown
from .revision_cost import RevisionCostRecorder
from .revision_saver import RevisionSaver, original_backup_path
from .training_timer import TrainingTimeRecorder
from .unlearning_metrics import RELEARN_DEFAULTS, UnlearningMetrics, load_oracle_network

__all__ = ["RevisionSaver", "TrainingTimeRecorder", "UnlearningReport", "format_report_markdown", "original_backup_path"]

from .metadata_updater import BundleMetadataUpdater  # noqa: E402

__all__ += ["BundleMetadataUpdater"]
__all__ += [
    "AuditManifest",
    "EvaluationRecord",
    "MembershipInference",
    "RELEARN_DEFAULTS",
    "RevisionCostRecorder",
    "UnlearningMetrics",
    "get_evaluation_record",
    "load_oracle_network",
    "package_versions",
]

from .segmentation_report import SegmentationUnlearningReport, format_segmentation_markdown  # noqa: E402

__all__ += ["SegmentationUnlearningReport", "format_segmentation_markdown"]
