# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Handler that runs membership inference attacks on the original, revised and oracle models during a revision.

It reads the per-sample outputs that :class:`~monai_unlearn.handlers.UnlearningMetrics` stored in the evaluation
record (so no network is evaluated twice) and adds the attack results to each evaluation. Attach it after
``UnlearningMetrics``: ignite runs the handlers of an event in the order they were attached.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from ignite.engine import Engine, Events

from monai_unlearn.metrics.mia import ATTACKS
from monai_unlearn.metrics.suite import ModelEvaluation

from .evaluation_record import EvaluationRecord, get_evaluation_record

__all__ = ["MembershipInference"]


class MembershipInference:
    """Attack the original model and the oracle at ``STARTED``, the revised model at ``COMPLETED`` (and each pass).

    The attacks and their definitions are in :mod:`monai_unlearn.metrics.mia`. The loss-threshold and
    logistic-regression attacks compare the per-sample losses of the forget set's training samples with those of
    held-out samples of the same class or group. The confidence and entropy SVC attacks are trained on retain against
    test samples and applied to the forget set, and their MIA-efficacy is the share of forget samples classified as
    non-members. Results go into
    each :class:`~monai_unlearn.metrics.ModelEvaluation`'s ``mia`` and into its metrics as ``mia_*`` values.

    Args:
        attacks: attack names from :data:`~monai_unlearn.metrics.mia.ATTACKS`.
        folds: cross-validation folds of the loss attacks.
        seed: seed of the folds and of the subsampling.
        svc_non_members: shadow non-members of the SVC attacks: ``"all"`` held-out samples (as SalUn and l1-sparse)
            or the held-out ``"retain"`` samples only.
        max_samples_per_side: cap on the SVC attacks' shadow samples per side (SVC fitting time grows quadratically).
        every_pass: also attack the model after each pass, adding ``mia_*`` values to the curves.
        name: name of the handler's logger.

    Raises:
        ValueError: for an unknown attack name.
        RuntimeError: at ``STARTED``, when no ``UnlearningMetrics`` handler was attached before this one.
    """

    def __init__(
        self,
        attacks: Sequence[str] = ATTACKS,
        folds: int = 5,
        seed: int = 0,
        svc_non_members: str = "all",
        max_samples_per_side: int | None = 2500,
        every_pass: bool = False,
        name: str = "MembershipInference",
    ) -> None:
        unknown = [attack for attack in attacks if attack not in ATTACKS]
        if unknown:
            raise ValueError(f"Unknown membership inference attacks {unknown}: expected names from {list(ATTACKS)}.")
        if svc_non_members not in ("all", "retain"):
            raise ValueError(f"Invalid svc_non_members {svc_non_members!r}: expected 'all' or 'retain'.")
        if int(folds) < 2:
            raise ValueError(f"folds must be at least 2, got {folds}.")
        self.settings: dict[str, Any] = {
            "attacks": tuple(attacks),
            "folds": int(folds),
            "seed": int(seed),
            "svc_non_members": svc_non_members,
            "max_samples_per_side": max_samples_per_side,
        }
        self.every_pass = bool(every_pass)
        self.logger = logging.getLogger(name)

    def attach(self, engine: Engine) -> None:
        """Register the attacks at STARTED, EPOCH_COMPLETED (when ``every_pass``) and COMPLETED."""
        engine.add_event_handler(Events.STARTED, self.attack_before)
        if self.every_pass:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self.attack_pass)
        engine.add_event_handler(Events.COMPLETED, self.attack_after)

    def _record(self, engine: Engine) -> EvaluationRecord:
        record = get_evaluation_record(engine)
        if record is None:
            raise RuntimeError(
                "MembershipInference found no evaluation record on engine.state; attach "
                "monai_unlearn.handlers.UnlearningMetrics before it in the handler list."
            )
        return record

    def _attack(self, record: EvaluationRecord, evaluation: ModelEvaluation | None) -> None:
        if evaluation is None or evaluation.mia:
            return
        record.suite.attack(evaluation, **self.settings)
        parts = []
        for attack, result in evaluation.mia.items():
            if result.skipped:
                parts.append(f"{attack} skipped ({result.skipped})")
            else:
                value = result.mia_efficacy if result.mia_efficacy is not None else result.auc
                label = "MIA-efficacy" if result.mia_efficacy is not None else "AUC"
                parts.append(f"{attack} {label} {value:.4f}" if value is not None else f"{attack} n/a")
        self.logger.info("Membership inference on the %s model: %s", evaluation.name, ", ".join(parts))

    def attack_before(self, engine: Engine) -> None:
        """Attack the original model and, when evaluated, the oracle."""
        record = self._record(engine)
        self._attack(record, record.original)
        self._attack(record, record.oracle)

    def attack_pass(self, engine: Engine) -> None:
        """Attack the model after the pass that just completed (the last pass is attacked at COMPLETED)."""
        record = self._record(engine)
        if record.curves and record.curves[-1][0] == int(engine.state.epoch):
            self._attack(record, record.curves[-1][1])

    def attack_after(self, engine: Engine) -> None:
        """Attack the revised model."""
        record = self._record(engine)
        self._attack(record, record.revised)
