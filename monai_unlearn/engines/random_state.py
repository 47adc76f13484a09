# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Capture and restore the random state that decides a run's data order and augmentation.

The unlearning trainer uses these helpers to make a resumed revision reproduce an uninterrupted one exactly. The
random state of a run lives in several places:

- the global generators of torch (and CUDA), NumPy and Python. A ``DataLoader`` without a generator draws the
  shuffling seed and the worker base seed from torch's global generator each time an iterator is created. Layers
  such as dropout draw from it during the forward pass;
- one ``numpy.random.RandomState`` per MONAI random transform (``Randomizable.R``), which MONAI's ``DataLoader``
  seeds once when it is built with ``num_workers=0``, and which then advances from batch to batch.

The states are stored as tensors and plain Python values, so that they pass ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["capture_random_state", "random_objects", "restore_random_state"]

_MAX_DEPTH = 16
_ATOMS = (str, bytes, int, float, bool, type(None), torch.Tensor, np.ndarray, torch.nn.Module)


def _numpy_state(generator: np.random.RandomState | None = None) -> dict[str, Any]:
    name, keys, position, has_gauss, cached = (generator or np.random).get_state()  # type: ignore[misc]
    return {
        "name": str(name),
        "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "pos": int(position),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def _numpy_tuple(state: dict[str, Any]) -> tuple:
    keys = np.asarray(state["keys"].numpy(), dtype=np.uint32)
    return (state["name"], keys, int(state["pos"]), int(state["has_gauss"]), float(state["cached_gaussian"]))


def _collect(value: Any, found: list[Any], seen: set[int], depth: int) -> None:
    from monai.transforms import Randomizable, Transform

    if depth > _MAX_DEPTH or id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, (np.random.RandomState, torch.Generator)):
        found.append(value)
    elif isinstance(value, _ATOMS):
        return
    elif isinstance(value, dict):
        for item in value.values():
            _collect(item, found, seen, depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _collect(item, found, seen, depth + 1)
    elif isinstance(value, (Transform, Randomizable)):
        for item in vars(value).values():
            _collect(item, found, seen, depth + 1)


def random_objects(loaders: Iterable[Any]) -> list[np.random.RandomState | torch.Generator]:
    """Return the random generators of the transforms of each loader's dataset, in a fixed order, without repeats.

    The dataset's ``transform`` is searched (through ``Subset``-style ``dataset`` wrappers), descending into MONAI
    transforms, lists, tuples and dictionaries. A generator shared by two loaders is listed once.
    """
    found: list[Any] = []
    seen: set[int] = set()
    for loader in loaders:
        if loader is None:
            continue
        dataset = getattr(loader, "dataset", None)
        for _ in range(4):
            if dataset is None:
                break
            if hasattr(dataset, "transform"):
                _collect(dataset.transform, found, seen, 0)
                break
            dataset = getattr(dataset, "dataset", None)
    return found


def capture_random_state(objects: Sequence[np.random.RandomState | torch.Generator] = ()) -> dict[str, Any]:
    """Return the global random states and the states of ``objects`` (see :func:`random_objects`)."""
    transforms = []
    for item in objects:
        if isinstance(item, torch.Generator):
            transforms.append({"torch": item.get_state()})
        else:
            transforms.append({"numpy": _numpy_state(item)})
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": _numpy_state(),
        "python": random.getstate(),
        "transforms": transforms,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_random_state(state: dict[str, Any], objects: Sequence[np.random.RandomState | torch.Generator] = ()) -> None:
    """Restore a state returned by :func:`capture_random_state` into the global generators and ``objects``.

    Raises:
        ValueError: when ``objects`` does not match the saved transform states in number or kind (the data
            pipeline of the resumed run differs from the one that was saved).
    """
    saved = state.get("transforms", [])
    if len(saved) != len(objects):
        raise ValueError(
            f"The saved random state contains {len(saved)} transform generators but the data pipeline has "
            f"{len(objects)}: the resumed run's transforms differ from the interrupted run's. Resume with the same "
            "configs, or restart the revision."
        )
    for item, item_state in zip(objects, saved):
        if isinstance(item, torch.Generator) and "torch" in item_state:
            item.set_state(item_state["torch"])
        elif isinstance(item, np.random.RandomState) and "numpy" in item_state:
            item.set_state(_numpy_tuple(item_state["numpy"]))
        else:
            raise ValueError("A saved transform generator is of another kind than the transform's; restart the run.")
    torch.set_rng_state(state["torch"])
    np.random.set_state(_numpy_tuple(state["numpy"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
