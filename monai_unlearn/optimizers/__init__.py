# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Optimizers over input tensors for the inner search of boundary unlearning."""

from __future__ import annotations

from .perturbed_sign_gradient import NOISE_LAWS, STEP_SIZE_SCHEDULES, PerturbedSignGradient, sample_noise, step_size_at
from .schedules import CLOSENESS_SCHEDULES, ClosenessSchedule

__all__ = [
    "PerturbedSignGradient",
    "ClosenessSchedule",
    "NOISE_LAWS",
    "STEP_SIZE_SCHEDULES",
    "CLOSENESS_SCHEDULES",
    "sample_noise",
    "step_size_at",
]
