# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Unlearning methods: the boundary method of Nahass et al. (2025) with its presets, and the method registry."""

from __future__ import annotations

from .base import StepOutput, UnlearningBatch, UnlearningMethod
from .boundary import BOUNDARY_PRESETS, RETAIN_TARGETS, BoundaryUnlearning
from .registry import METHOD_REGISTRY, available_methods, create_method, register_method

__all__ = [
    "BOUNDARY_PRESETS",
    "METHOD_REGISTRY",
    "RETAIN_TARGETS",
    "BoundaryUnlearning",
    "StepOutput",
    "UnlearningBatch",
    "UnlearningMethod",
    "available_methods",
    "create_method",
    "register_method",
]
