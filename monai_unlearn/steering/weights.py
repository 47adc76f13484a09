# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Read network weights from a module, a state dict or a checkpoint file.

Composition and interpolation (:mod:`monai_unlearn.steering`) combine the weights of two runs after the revision
handlers have written them. This module turns each run into a plain state dict and checks that two of them describe
the same architecture.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Union

import torch
from torch import nn

from monai_unlearn.engines.unlearning_trainer import unwrap_network
from monai_unlearn.utils import load_checkpoint, state_dict_layout

__all__ = ["WeightSource", "load_state", "check_same_layout"]

#: A run's weights: a network, a state dict, or the path of a weights-only checkpoint (a bare state dict, or one
#: stored under ``model``, ``network``, ``state_dict`` or ``net``).
WeightSource = Union[nn.Module, Mapping[str, torch.Tensor], str, os.PathLike]


def load_state(source: WeightSource, name: str = "weights") -> dict[str, torch.Tensor]:
    """Return the state dict of ``source`` as detached CPU tensors, without changing ``source``.

    Args:
        source: a network, a state dict or a checkpoint path.
        name: the argument's name, for error messages.

    Raises:
        FileNotFoundError: when a checkpoint path does not exist.
        ValueError: when a checkpoint is not weights-only or contains no state dict.
        TypeError: for any other kind of ``source``.
    """
    if isinstance(source, nn.Module):
        state = unwrap_network(source).state_dict()
    elif isinstance(source, (str, os.PathLike)):
        checkpoint = load_checkpoint(source)
        layout = state_dict_layout(checkpoint)
        state = checkpoint if layout is None else checkpoint[layout]
    elif isinstance(source, Mapping):
        layout = state_dict_layout(dict(source))
        state = source if layout is None else source[layout]
    else:
        raise TypeError(
            f"{name} must be a torch.nn.Module, a state dict or a checkpoint path, got {type(source).__name__}."
        )
    return {key: value.detach().to("cpu").clone() for key, value in state.items()}


def _describe(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(repr(key) for key in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def check_same_layout(
    state_a: Mapping[str, torch.Tensor],
    state_b: Mapping[str, torch.Tensor],
    names: tuple[str, str] = ("the first network", "the second network"),
    ignore: Any = None,
) -> None:
    """Check that two state dicts have the same keys and, for keys not matched by ``ignore``, the same shapes.

    Args:
        state_a, state_b: the state dicts.
        names: how the messages call the two sides.
        ignore: a predicate on a key; shapes of the keys it accepts are not compared (the caller checks them).

    Raises:
        ValueError: naming the first keys that one side lacks, or the first keys whose shapes differ, because the
            two networks then have different architectures.
    """
    only_a = sorted(set(state_a) - set(state_b))
    only_b = sorted(set(state_b) - set(state_a))
    if only_a or only_b:
        parts = []
        if only_a:
            parts.append(f"only {names[0]} has {_describe(only_a)}")
        if only_b:
            parts.append(f"only {names[1]} has {_describe(only_b)}")
        raise ValueError(
            f"Mismatched architectures: {'; '.join(parts)}. Both runs must come from the same network definition "
            "(the same class and constructor arguments)."
        )
    differing = [
        key
        for key in state_a
        if (ignore is None or not ignore(key)) and tuple(state_a[key].shape) != tuple(state_b[key].shape)
    ]
    if differing:
        details = ", ".join(
            f"{key!r} {list(state_a[key].shape)} vs {list(state_b[key].shape)}" for key in differing[:3]
        )
        raise ValueError(
            f"Mismatched architectures: {len(differing)} tensors differ in shape between {names[0]} and {names[1]} "
            f"({details}). Both runs must come from the same network definition (the same constructor arguments)."
        )
