# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Engines: the unlearning trainer, a ``monai.engines.SupervisedTrainer`` subclass."""

from __future__ import annotations

from .unlearning_trainer import BATCHNORM_POLICIES, PAIRINGS, UnlearningTrainer, unwrap_network

__all__ = ["BATCHNORM_POLICIES", "PAIRINGS", "UnlearningTrainer", "unwrap_network"]
