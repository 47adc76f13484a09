# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Select one 2-D slice of a loaded volume by an index stored in the data dictionary.

A 2-D classifier trained on slices of DICOM volumes (for example SIEMENS mosaics, which the SimpleITK reader splits
into a volume) lists each slice as one datalist entry: the file path and the slice index. This transform runs after
``LoadImaged`` and ``EnsureChannelFirstd`` and before the forget tag, in the flow transform -> engine -> ... .
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

__all__ = ["SelectSliced", "SelectSliceD", "SelectSliceDict"]


class SelectSliced(MapTransform):
    """Replace a channel-first volume ``(C, H, W, D)`` by its slice ``(C, H, W)`` at ``data[index_key]``.

    A 2-D image ``(C, H, W)`` passes unchanged when the index is 0, so single-slice files and volumes can share a
    datalist.

    Args:
        keys: keys of the channel-first images.
        index_key: key of the slice index along the last spatial axis.
        allow_missing_keys: do not raise when an image key is absent.

    Raises:
        KeyError: at call time, when the index key is missing.
        IndexError: at call time, when the index is outside the volume, or not 0 for a 2-D image.
    """

    def __init__(self, keys: KeysCollection, index_key: str = "slice_index", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.index_key = index_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.index_key not in d:
            raise KeyError(f"SelectSliced needs the slice index at key {self.index_key!r}; add it to each entry.")
        index = int(d[self.index_key])
        for key in self.key_iterator(d):
            image = d[key]
            if image.ndim == 3:
                if index != 0:
                    raise IndexError(f"Slice {index} requested from the 2-D image at {key!r}; only slice 0 exists.")
                continue
            if image.ndim != 4:
                shape = tuple(image.shape)
                raise IndexError(f"SelectSliced expects (C, H, W, D) or (C, H, W) at {key!r}, got {shape}.")
            depth = image.shape[-1]
            if not -depth <= index < depth:
                raise IndexError(f"Slice {index} is outside the {depth} slices of the image at {key!r}.")
            selected = image[..., index]
            d[key] = selected.contiguous() if isinstance(selected, torch.Tensor) else selected.copy()
        return d


SelectSliceD = SelectSliceDict = SelectSliced
