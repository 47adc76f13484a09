# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""The standard unlearning baselines, run by the same trainer, data and handlers as the boundary method.

Importing this package registers each baseline in :data:`monai_unlearn.methods.METHOD_REGISTRY`, so a bundle overlay
selects it by name (``"train#trainer#method": "scrub"``). Boundary Shrink is not repeated here: the ``boundary_shrink``
preset of :class:`~monai_unlearn.methods.BoundaryUnlearning` is that baseline.
"""

from __future__ import annotations

from collections.abc import Callable

from monai_unlearn.methods import UnlearningMethod, register_method

from .boundary_expanding import BoundaryExpanding
from .common import BaselineMethod
from .fine_tune import FineTune
from .l1_sparse import L1_SCHEDULES, L1Sparse
from .negative_gradient import NegGrad, NegGradPlus
from .output_layer import OutputLayer, find_output_layer, resize_output_channels
from .random_labels import RandomLabels
from .salun import SalUn, saliency_mask
from .scrub import SCRUB
from .ssd import IMPORTANCE_ESTIMATES, SSD, dampen

__all__ = [
    "BASELINES",
    "BaselineMethod",
    "BoundaryExpanding",
    "FineTune",
    "IMPORTANCE_ESTIMATES",
    "L1Sparse",
    "L1_SCHEDULES",
    "NegGrad",
    "NegGradPlus",
    "OutputLayer",
    "RandomLabels",
    "SCRUB",
    "SSD",
    "SalUn",
    "dampen",
    "find_output_layer",
    "resize_output_channels",
    "saliency_mask",
]

#: Registry names of the baselines and their classes.
BASELINES: dict[str, Callable[..., UnlearningMethod]] = {
    "finetune": FineTune,
    "neggrad": NegGrad,
    "neggrad_plus": NegGradPlus,
    "random_labels": RandomLabels,
    "boundary_expanding": BoundaryExpanding,
    "scrub": SCRUB,
    "salun": SalUn,
    "l1_sparse": L1Sparse,
    "ssd": SSD,
}

for _name, _factory in BASELINES.items():
    register_method(_name, _factory)
