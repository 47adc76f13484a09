# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""The Pareto front of unlearning runs over two objectives: forgetting and retention.

A run is on the front when no other run forgets at least as well and retains at least as well, and strictly better in
one of the two. The sweep (:mod:`monai_unlearn.steering.sweep`) marks the front in its table and plot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["pareto_front", "forget_objective"]


def forget_objective(forget: float, oracle_forget: float | None = None) -> float:
    """Return the forget objective of a run (lower is better).

    With the oracle's value it is the distance ``|forget - oracle_forget|``, because the target of unlearning is the
    oracle's behaviour, not 0 % accuracy on the forget set. Without it, the forget metric itself.
    """
    return abs(forget - oracle_forget) if oracle_forget is not None else forget


def pareto_front(forget: Sequence[float], retain: Sequence[float]) -> list[bool]:
    """Return, for each run, whether it is on the Pareto front of lowest ``forget`` and highest ``retain``.

    Args:
        forget: the forget objective of each run (lower is better; see :func:`forget_objective`).
        retain: the retain metric of each run (higher is better).

    Returns:
        One flag per run. Runs with equal values are all on the front if one of them is; a run with a NaN value is
        never on it.

    Raises:
        ValueError: when the two sequences differ in length.
    """
    if len(forget) != len(retain):
        raise ValueError(f"pareto_front: got {len(forget)} forget values but {len(retain)} retain values.")
    valid = [not (math.isnan(f) or math.isnan(r)) for f, r in zip(forget, retain)]
    flags = []
    for index, (f, r) in enumerate(zip(forget, retain)):
        if not valid[index]:
            flags.append(False)
            continue
        dominated = any(
            valid[other]
            and forget[other] <= f
            and retain[other] >= r
            and (forget[other] < f or retain[other] > r)
            for other in range(len(forget))
        )
        flags.append(not dominated)
    return flags
