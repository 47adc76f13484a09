# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Schedules of the closeness weight ``lambda_t`` over outer steps of the unlearning loop.

The closeness weight keeps the inner search near the clean image. METHOD of Nahass et al. (arXiv:2505.21872) lets it
follow one of four schedules over the outer iterations ``t = 1, 2, ...`` (the trainer's iteration counter).
"""

from __future__ import annotations

import math

__all__ = ["ClosenessSchedule", "CLOSENESS_SCHEDULES"]

CLOSENESS_SCHEDULES = ("constant", "inverse", "exponential", "linear")


class ClosenessSchedule:
    """Closeness weight ``lambda_t`` as a function of the outer step ``t`` (1-based).

    - ``"constant"``: ``lambda``;
    - ``"inverse"``: ``lambda / t``;
    - ``"exponential"``: ``lambda * exp(-rate * t)``;
    - ``"linear"``: ``lambda * max(0, 1 - t / total_steps)``.

    Args:
        initial: ``lambda >= 0``.
        kind: one of :data:`CLOSENESS_SCHEDULES`.
        rate: decay rate ``r > 0`` of the exponential schedule.
        total_steps: number of outer steps ``T >= 1`` of the linear schedule.

    Raises:
        ValueError: when an argument is out of range or a schedule misses the argument it needs.
    """

    def __init__(
        self, initial: float, kind: str = "constant", rate: float | None = None, total_steps: int | None = None
    ) -> None:
        if not isinstance(initial, (int, float)) or isinstance(initial, bool) or not math.isfinite(initial) or initial < 0:
            raise ValueError(f"Invalid closeness weight: {initial!r}. It must be a finite number >= 0.")
        if kind not in CLOSENESS_SCHEDULES:
            raise ValueError(f"Invalid closeness schedule {kind!r}: expected one of {CLOSENESS_SCHEDULES}.")
        if kind == "exponential" and (rate is None or not math.isfinite(rate) or rate <= 0):
            raise ValueError(f"The exponential closeness schedule needs a rate > 0, got {rate!r}.")
        if kind == "linear" and (
            not isinstance(total_steps, int) or isinstance(total_steps, bool) or total_steps < 1
        ):
            raise ValueError(f"The linear closeness schedule needs total_steps >= 1, got {total_steps!r}.")
        self.initial = float(initial)
        self.kind = kind
        self.rate = rate
        self.total_steps = total_steps

    def __call__(self, step: int) -> float:
        """Return ``lambda_t`` for outer step ``step`` (1-based)."""
        if step < 1:
            raise ValueError(f"Outer steps are counted from 1, got {step}.")
        if self.kind == "constant":
            return self.initial
        if self.kind == "inverse":
            return self.initial / step
        if self.kind == "exponential":
            return self.initial * math.exp(-self.rate * step)  # type: ignore[operator]
        return self.initial * max(0.0, 1.0 - step / self.total_steps)  # type: ignore[operator]

    def __repr__(self) -> str:
        return f"ClosenessSchedule(initial={self.initial}, kind={self.kind!r}, rate={self.rate}, total_steps={self.total_steps})"
