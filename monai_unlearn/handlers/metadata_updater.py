# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Handler that bumps the bundle version and records the revision in ``metadata.json`` when a revision completes."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from ignite.engine import Engine, Events

from monai_unlearn.bundle.metadata import format_changelog_entry, record_revision
from monai_unlearn.transforms import ForgetRule, as_rule, split_datalist

__all__ = ["BundleMetadataUpdater"]


class BundleMetadataUpdater:
    """At ``Events.COMPLETED``, bump the bundle version and add a changelog entry that describes the revision.

    Attach it after :class:`~monai_unlearn.handlers.RevisionSaver` (whose digests the entry records) and after
    :class:`~monai_unlearn.handlers.UnlearningReport` (whose metrics it records), so that it runs last. A run that
    fails or is killed never reaches COMPLETED and leaves ``metadata.json`` unchanged. The new version is stored in
    ``engine.state.revision["bundle_version"]``.

    Args:
        metadata_file: the bundle's ``configs/metadata.json``.
        forget_rule: the forget rule (identifying values are replaced by counts in the entry).
        passes: passes over the forget set, recorded in the entry.
        datalist: the training datalist. When given, the forget and retain counts are computed from it. Otherwise
            they are the sample counts of the trainer's first pass.
        report: the run's :class:`~monai_unlearn.handlers.UnlearningReport`, or None.
        learning_rate: the revision's learning rate, when the overlay set one.
        seed: the revision's seed.
        version_bump: ``"patch"`` (default) or ``"minor"``.
        new_version: explicit new version instead of a bump.
        name: name of the handler's logger.
    """

    def __init__(
        self,
        metadata_file: str | os.PathLike,
        forget_rule: ForgetRule | str,
        passes: int | None = None,
        datalist: Sequence[Mapping[str, Any]] | None = None,
        report: Any = None,
        learning_rate: float | None = None,
        seed: int | None = None,
        version_bump: str = "patch",
        new_version: str | None = None,
        name: str = "BundleMetadataUpdater",
    ) -> None:
        self.metadata_file = metadata_file
        self.rule = as_rule(forget_rule)
        self.passes = passes
        self.datalist = datalist
        self.report = report
        self.learning_rate = learning_rate
        self.seed = seed
        self.version_bump = version_bump
        self.new_version = new_version
        self.logger = logging.getLogger(name)

    def attach(self, engine: Engine) -> None:
        """Register the update at COMPLETED."""
        engine.add_event_handler(Events.COMPLETED, self)

    def _counts(self, engine: Engine) -> tuple[int | None, int | None]:
        if self.datalist is not None:
            forget, retain = split_datalist(self.datalist, self.rule)
            return len(forget), len(retain)
        history = getattr(engine, "history", None) or []
        if history:
            return history[0].get("forget_samples"), history[0].get("retain_samples")
        return None, None

    def __call__(self, engine: Engine) -> str:
        """Write the new version and changelog entry; return the new version."""
        forget_count, retain_count = self._counts(engine)
        method = getattr(engine, "method", None)
        report = getattr(self.report, "report", None) if self.report is not None else None
        revision = getattr(engine.state, "revision", None) or {}
        entry = format_changelog_entry(
            rule=self.rule,
            method=method.config() if method is not None else None,
            passes=self.passes,
            forget_count=forget_count,
            retain_count=retain_count,
            revision=revision,
            report=report,
            learning_rate=self.learning_rate,
            seed=self.seed,
        )
        version = record_revision(self.metadata_file, entry, self.version_bump, self.new_version)
        revision["bundle_version"] = version
        engine.state.revision = revision
        self.logger.info("Bundle version is now %s; the changelog of %s records the revision.", version, self.metadata_file)
        return version
