# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Dictionary transform that writes the forget region of label forgetting: the voxels of the retired labels.

It belongs to the first step of the flow transform -> engine -> inner search -> loss -> handlers. The unlearning
trainer reads the region map through ``region_key`` and hands it to the inner search, which searches boundary points
over the region only and gives the region's voxels boundary labels, while every other voxel keeps its ground truth.
Put the transform after the spatial transforms (flips, crops, slice sampling): it reads the final label map, so the
region stays aligned with the image whatever the bundle's augmentation does.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

__all__ = ["ForgetLabelRegiond", "ForgetLabelRegionD", "ForgetLabelRegionDict", "label_region"]


def label_region(label: torch.Tensor | np.ndarray, labels: Sequence[int]) -> torch.Tensor | np.ndarray:
    """Return a boolean map of the voxels whose label is one of ``labels``, shaped ``(1, *spatial)``.

    ``label`` is channel first: class indices ``(1, *spatial)``, or one-hot ``(C, *spatial)`` with ``C > 1``. The
    result has the type of the input (numpy array or tensor; a MONAI ``MetaTensor`` becomes a plain tensor).

    Raises:
        ValueError: when a one-hot label has fewer channels than the largest retired label needs.
    """
    is_numpy = isinstance(label, np.ndarray)
    values = torch.as_tensor(label)
    if hasattr(values, "as_tensor"):
        values = values.as_tensor()
    if values.ndim < 2:
        raise ValueError(
            f"Invalid label shape {tuple(values.shape)}: expected a channel-first label map (1 or C channels, then "
            "the spatial axes)."
        )
    if values.shape[0] > 1:
        if max(labels) >= values.shape[0]:
            raise ValueError(
                f"Retired labels {list(labels)} need a one-hot label with more than {max(labels)} channels, got "
                f"{values.shape[0]} channels."
            )
        region = (values[list(labels)] > 0.5).any(dim=0, keepdim=True)
    else:
        indices = values.round().long()
        region = torch.isin(indices, torch.as_tensor(list(labels), dtype=torch.long, device=indices.device))
    return region.cpu().numpy() if is_numpy else region


class ForgetLabelRegiond(MapTransform):
    """Write ``data[region_key]``, the voxels of the retired labels, and an integer forget flag per sample.

    With the region map, the unlearning trainer (``region_key=...``) treats a sample as a forget sample whose forget
    region is the retired label's voxels. The boundary labels of those voxels never take a retired label when the
    method excludes it (``exclude_classes``), and every voxel outside the region keeps its ground truth, which never
    contains a retired label because the region covers all of them.

    Args:
        keys: the key of the label map (exactly one).
        labels: the retired label values, for example ``[2]``.
        region_key: key of the boolean region map, shaped ``(1, *spatial)`` like a class-index label.
        forget_key: key of the integer flag: 1 when the sample has at least one retired voxel, else 0. None writes
            no flag.
        allow_missing_keys: skip samples without the label key instead of raising ``KeyError``.

    Raises:
        ValueError: at construction, for no or several keys, no retired label, or a negative label value.
    """

    def __init__(
        self,
        keys: KeysCollection,
        labels: Sequence[int],
        region_key: str = "forget_region",
        forget_key: str | None = "forget",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"ForgetLabelRegiond reads exactly one label key, got {list(self.keys)}.")
        labels = [labels] if isinstance(labels, (int, np.integer)) else list(labels)
        if not labels:
            raise ValueError("ForgetLabelRegiond needs at least one retired label value, got none.")
        for value in labels:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"Retired labels must be non-negative integers, got {value!r} in {labels}.")
        self.labels = [int(v) for v in labels]
        self.region_key = region_key
        self.forget_key = forget_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            region = label_region(d[key], self.labels)
            d[self.region_key] = region
            if self.forget_key is not None:
                d[self.forget_key] = int(bool(region.any()))
        return d


ForgetLabelRegionD = ForgetLabelRegionDict = ForgetLabelRegiond
