# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Engines: the unlearning trainer, a ``monai.engines.SupervisedTrainer`` subclass, and multi-process helpers."""

from __future__ import annotations

from .unlearning_trainer import BATCHNORM_POLICIES, PAIRINGS, UnlearningTrainer, unwrap_network
from .unlearning_trainer import channels_last_format
from .distributed import EVERY_RANK_HANDLERS, handlers_for_rank

__all__ = ["BATCHNORM_POLICIES", "PAIRINGS", "UnlearningTrainer", "unwrap_network"]
__all__ += ["channels_last_format", "EVERY_RANK_HANDLERS", "handlers_for_rank"]
