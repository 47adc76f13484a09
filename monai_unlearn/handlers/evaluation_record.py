# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""The evaluation record that the evaluation handlers of one revision share through ``engine.state``.

:class:`~monai_unlearn.handlers.UnlearningMetrics` creates it and fills in the evaluations of the original model,
the model after each pass, the revised model and the retrain oracle;
:class:`~monai_unlearn.handlers.MembershipInference` adds attack results to those evaluations;
:class:`~monai_unlearn.handlers.UnlearningReport` writes them out. Handlers observe only: nothing here changes the
training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ignite.engine import Engine

from monai_unlearn.metrics.suite import EvaluationSuite, ModelEvaluation

__all__ = ["EvaluationRecord", "RECORD_ATTRIBUTE", "get_evaluation_record"]

#: Attribute of ``engine.state`` that contains the shared :class:`EvaluationRecord`.
RECORD_ATTRIBUTE = "unlearning_evaluation"


@dataclass
class EvaluationRecord:
    """Evaluations of one revision.

    Attributes:
        suite: the evaluation protocol (loaders, splits, evaluation function).
        original: the trained model, evaluated before the first pass.
        revised: the revised model, evaluated when the run completes.
        oracle: the retrain oracle, evaluated before the first pass, when an oracle checkpoint is given.
        curves: ``(pass, evaluation)`` pairs; pass 0 is the original model. Per-sample outputs of a pass are dropped
            once the next pass is evaluated.
        relearn: relearn-time results by model name (``"revised"``, ``"oracle"``), as dicts.
        oracle_info: the oracle checkpoint's path and SHA-256, and its training record when one lies beside it.
    """

    suite: EvaluationSuite
    original: ModelEvaluation | None = None
    revised: ModelEvaluation | None = None
    oracle: ModelEvaluation | None = None
    curves: list[tuple[int, ModelEvaluation]] = field(default_factory=list)
    relearn: dict[str, dict[str, Any]] = field(default_factory=dict)
    oracle_info: dict[str, Any] | None = None

    @property
    def latest(self) -> ModelEvaluation | None:
        """The evaluation of the most recent pass (or the original model before any pass)."""
        return self.curves[-1][1] if self.curves else None

    def models(self) -> dict[str, ModelEvaluation]:
        """Return the available evaluations by model name, in the order original, revised, oracle."""
        named = (("original", self.original), ("revised", self.revised), ("oracle", self.oracle))
        return {name: evaluation for name, evaluation in named if evaluation is not None}

    def curve_rows(self) -> list[dict[str, Any]]:
        """Return one row per evaluated pass: ``{"pass": k, <metrics>}``."""
        return [{"pass": number, **evaluation.metrics} for number, evaluation in self.curves]

    def covers(self, loaders: dict[str, Any]) -> bool:
        """Return whether the record's suite evaluates exactly these loader objects under these split names."""
        own = self.suite.loaders
        return set(own) == set(loaders) and all(own[name] is loaders[name] for name in loaders)


def get_evaluation_record(engine: Engine) -> EvaluationRecord | None:
    """Return the evaluation record on ``engine.state``, or None when no metrics handler published one."""
    record = getattr(engine.state, RECORD_ATTRIBUTE, None)
    return record if isinstance(record, EvaluationRecord) else None
