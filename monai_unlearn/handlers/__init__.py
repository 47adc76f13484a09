# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Ignite handlers that observe an unlearning run: reports, checkpoint keeping and timing."""

from __future__ import annotations

from .report import UnlearningReport, format_report_markdown
from .revision_saver import RevisionSaver, original_backup_path
from .training_timer import TrainingTimeRecorder

__all__ = ["RevisionSaver", "TrainingTimeRecorder", "UnlearningReport", "format_report_markdown", "original_backup_path"]

from .metadata_updater import BundleMetadataUpdater  # noqa: E402

__all__ += ["BundleMetadataUpdater"]
