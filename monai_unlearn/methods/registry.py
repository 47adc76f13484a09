# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Registry of unlearning methods by name, so that a bundle overlay selects a method with a string."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import UnlearningMethod
from .boundary import BOUNDARY_PRESETS, BoundaryUnlearning

__all__ = ["METHOD_REGISTRY", "register_method", "create_method", "available_methods"]

METHOD_REGISTRY: dict[str, Callable[..., UnlearningMethod]] = {}


def register_method(name: str, factory: Callable[..., UnlearningMethod]) -> None:
    """Register ``factory`` (a class or function returning an :class:`UnlearningMethod`) under ``name``."""
    if name in METHOD_REGISTRY:
        raise ValueError(f"An unlearning method named {name!r} is already registered.")
    METHOD_REGISTRY[name] = factory


def available_methods() -> list[str]:
    """Return the registered method names, sorted."""
    return sorted(METHOD_REGISTRY)


def create_method(method: str | UnlearningMethod, **kwargs: Any) -> UnlearningMethod:
    """Return ``method`` itself if it is an :class:`UnlearningMethod`, else build the registered method of that name.

    Raises:
        ValueError: for an unknown name, or settings given together with an already built method.
    """
    if isinstance(method, UnlearningMethod):
        if kwargs:
            raise ValueError(
                f"Settings {sorted(kwargs)} were given with an already built method {type(method).__name__}; "
                "pass them to its constructor instead."
            )
        return method
    if not isinstance(method, str) or method not in METHOD_REGISTRY:
        raise ValueError(f"Unknown unlearning method {method!r}: expected one of {available_methods()}.")
    return METHOD_REGISTRY[method](**kwargs)


def _boundary_preset(preset: str) -> Callable[..., UnlearningMethod]:
    def factory(**kwargs: Any) -> UnlearningMethod:
        return BoundaryUnlearning(preset=preset, **kwargs)

    factory.__name__ = f"boundary_{preset}"
    return factory


for _preset in BOUNDARY_PRESETS:
    register_method(_preset, _boundary_preset(_preset))
