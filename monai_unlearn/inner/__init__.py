# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Inner search of boundary unlearning: boundary points and boundary labels from the frozen original network."""

from __future__ import annotations

from .boundary_search import BoundarySearch, BoundarySearchResult, frozen_copy, soft_boundary_targets, to_class_indices

__all__ = ["BoundarySearch", "BoundarySearchResult", "frozen_copy", "soft_boundary_targets", "to_class_indices"]
