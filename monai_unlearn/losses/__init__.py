# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Forget and retain losses of the outer unlearning step."""

from __future__ import annotations

from .unlearning_losses import (
    distillation_loss,
    forget_loss,
    per_sample_cross_entropy,
    retain_loss,
    soft_cross_entropy,
)

__all__ = ["distillation_loss", "forget_loss", "per_sample_cross_entropy", "retain_loss", "soft_cross_entropy"]
