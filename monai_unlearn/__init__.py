# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""monai_unlearn: revise a trained MONAI bundle so that it forgets part of its training data.

The core algorithm is boundary-based bilevel unlearning with a perturbed sign-gradient inner solver
(G. R. Nahass et al., arXiv:2505.21872, 2025), which builds on Boundary Shrink (M. Chen et al., "Boundary
Unlearning", CVPR 2023).
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import data, engines, handlers, inner, losses, methods, metrics, optimizers, transforms  # noqa: E402
from . import baselines  # noqa: E402  (registers the baseline methods by name)
from . import bundle  # noqa: E402
from . import audit, oracle  # noqa: E402
from . import steering  # noqa: E402

__all__ = [
    "__version__",
    "audit",
    "baselines",
    "bundle",
    "data",
    "engines",
    "handlers",
    "inner",
    "losses",
    "methods",
    "metrics",
    "optimizers",
    "oracle",
    "steering",
    "transforms",
]
