# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Metrics of unlearning: forget, retain and test performance of a revised model, membership inference attacks,
the gap to the retrain oracle, relearn time and the cost of a run."""

from __future__ import annotations

from .case_mia import case_loss_mia
from .classification import ClassifierEvaluation, collect_classifier_outputs, evaluate_classifier
from .comparison import compare_models, default_gap_metrics, headline_metrics, oracle_gap
from .cost import CostMonitor, RunCost, peak_rss_bytes, reset_peak_rss
from .mia import (
    ATTACKS,
    AttackResult,
    attack_features,
    attack_summary,
    loss_logistic_attack,
    loss_threshold_attack,
    run_attacks,
    svc_attack,
)
from .relearn import RelearnResult, relearn_time
from .split_accuracy import ForgetSplitAccuracy
from .suite import EvaluationSuite, ModelEvaluation
from .segmentation import SegmenterEvaluation, collect_segmenter_outputs, evaluate_segmenter

__all__ = [
    "ClassifierEvaluation",
    "collect_classifier_outputs",
    "evaluate_classifier",
    "ATTACKS",
    "AttackResult",
    "CostMonitor",
    "EvaluationSuite",
    "ForgetSplitAccuracy",
    "ModelEvaluation",
    "RelearnResult",
    "RunCost",
    "attack_features",
    "attack_summary",
    "compare_models",
    "default_gap_metrics",
    "headline_metrics",
    "loss_logistic_attack",
    "loss_threshold_attack",
    "oracle_gap",
    "peak_rss_bytes",
    "relearn_time",
    "reset_peak_rss",
    "run_attacks",
    "svc_attack",
    "SegmenterEvaluation",
    "case_loss_mia",
    "collect_segmenter_outputs",
    "evaluate_segmenter",
]
