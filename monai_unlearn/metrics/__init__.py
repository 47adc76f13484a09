# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Metrics of unlearning: forget, retain and test performance of a revised model."""

from __future__ import annotations

from .classification import ClassifierEvaluation, collect_classifier_outputs, evaluate_classifier

__all__ = ["ClassifierEvaluation", "collect_classifier_outputs", "evaluate_classifier"]
