# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Weight interpolation between two unlearning runs, with the mixing weight chosen on a validation split.

``theta(alpha) = (1 - alpha) * theta_A + alpha * theta_B`` moves along the straight line between two runs of the same
network, for example a run that keeps the retain set well (A) and one that forgets more (B). :func:`choose_alpha`
evaluates a grid of ``alpha`` values with an :class:`~monai_unlearn.metrics.EvaluationSuite` and returns the one that
reaches a requested forget level at the best retain level. This extends the model composition of Nahass et al.,
arXiv:2505.21872 (2025), from swapping layers to mixing all weights.

In the flow transform -> engine -> inner search -> loss -> handlers, interpolation runs after the revisions, on their
saved weights.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from monai_unlearn.engines.unlearning_trainer import unwrap_network

from .weights import WeightSource, check_same_layout, load_state

__all__ = ["AlphaChoice", "DEFAULT_ALPHAS", "choose_alpha", "interpolate", "interpolated_network"]

logger = logging.getLogger(__name__)

#: The default grid of mixing weights: 0, 0.1, ..., 1.
DEFAULT_ALPHAS: tuple[float, ...] = tuple(round(0.1 * step, 1) for step in range(11))


def _check_alpha(alpha: Any, extrapolate: bool) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
        raise ValueError(f"Invalid alpha {alpha!r}; it must be a finite number.")
    if not extrapolate and not 0.0 <= alpha <= 1.0:
        raise ValueError(f"Invalid alpha {alpha!r}; it must be in [0, 1], or pass extrapolate=True.")
    return float(alpha)


def interpolate(
    state_a: WeightSource, state_b: WeightSource, alpha: float, extrapolate: bool = False
) -> dict[str, torch.Tensor]:
    """Return the weights ``(1 - alpha) * A + alpha * B`` of two runs of the same network.

    Floating-point tensors (weights, biases and BatchNorm running statistics) are mixed. Integer tensors, such as
    BatchNorm's ``num_batches_tracked``, cannot be mixed and are taken from A when ``alpha < 0.5`` and from B
    otherwise. ``alpha = 0`` returns A's tensors and ``alpha = 1`` B's tensors exactly.

    NOTE: the mixed BatchNorm running statistics are the mixture of the two runs' statistics, not the statistics of
    the mixed network's activations. After ``batchnorm="eval"`` revisions both runs keep the original's statistics,
    so the two agree.

    Args:
        state_a, state_b: the two runs: networks, state dicts or checkpoint paths.
        alpha: the mixing weight of B, in [0, 1].
        extrapolate: accept ``alpha`` outside [0, 1] (moving past A or B on the same line).

    Returns:
        A new state dict on the CPU.

    Raises:
        ValueError: for an invalid ``alpha`` or runs of different architectures.
    """
    alpha = _check_alpha(alpha, extrapolate)
    first = load_state(state_a, "state_a")
    second = load_state(state_b, "state_b")
    check_same_layout(first, second, ("state_a", "state_b"))
    mixed: dict[str, torch.Tensor] = {}
    for key, value_a in first.items():
        value_b = second[key]
        if alpha == 0.0:
            mixed[key] = value_a.clone()
        elif alpha == 1.0:
            mixed[key] = value_b.clone()
        elif value_a.is_floating_point():
            mixed[key] = torch.lerp(value_a, value_b.to(value_a.dtype), alpha)
        else:
            mixed[key] = (value_a if alpha < 0.5 else value_b).clone()
    return mixed


@dataclass
class AlphaChoice:
    """The mixing weight chosen by :func:`choose_alpha` and the evaluations behind it.

    Attributes:
        alpha: the chosen mixing weight of B.
        state: the interpolated weights at ``alpha``.
        forget: the forget metric at ``alpha``.
        retain: the retain metric at ``alpha``.
        candidates: one row per evaluated alpha: ``alpha``, ``forget``, ``retain``, ``reached`` (whether the forget
            level was reached) and ``metrics`` (all headline metrics).
    """

    alpha: float
    state: dict[str, torch.Tensor]
    forget: float
    retain: float
    candidates: list[dict[str, Any]] = field(default_factory=list)


def choose_alpha(
    state_a: WeightSource,
    state_b: WeightSource,
    network: nn.Module,
    suite: Any,
    forget_level: float,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    forget_metric: str | None = None,
    retain_metric: str | None = None,
    lower_forget_is_more: bool = True,
    device: str | torch.device = "cpu",
) -> AlphaChoice:
    """Choose the mixing weight that reaches ``forget_level`` at the best retain level, on a validation split.

    Each ``alpha`` is evaluated with ``suite`` (an :class:`~monai_unlearn.metrics.EvaluationSuite`, without attacks:
    give it the validation loader as its training split, tagged with the forget flag). An alpha reaches the level
    when its forget metric is at most ``forget_level`` (at least, with ``lower_forget_is_more=False``). Among those,
    the one with the highest retain metric wins, and ties go to the smaller alpha (closer to A).

    Args:
        state_a, state_b: the two runs (networks, state dicts or checkpoint paths).
        network: the network definition to load each mixture into (a copy is used; ``network`` is not changed).
        suite: the evaluation suite of the validation split.
        forget_level: the requested forget level, in the forget metric's units (for example 0.05 for at most 5 %
            accuracy on the forgotten class, or the oracle's value).
        alphas: the mixing weights to evaluate, each in [0, 1].
        forget_metric: the headline metric that measures forgetting; None uses ``forget_train_<suite.metric>``.
        retain_metric: the headline metric that measures retention; None uses ``retain_<suite.metric>``.
        lower_forget_is_more: whether a lower forget metric means more forgetting (true for accuracy and Dice).
        device: device of the evaluations.

    Returns:
        The :class:`AlphaChoice`.

    Raises:
        ValueError: for an empty or invalid grid, a metric the suite does not produce, or when no alpha reaches
            ``forget_level`` (the message gives the closest alpha and its forget value).
    """
    if not alphas:
        raise ValueError("choose_alpha needs at least one alpha to evaluate, got an empty grid.")
    grid = sorted({_check_alpha(alpha, extrapolate=False) for alpha in alphas})
    metric = getattr(suite, "metric", "accuracy")
    forget_metric = forget_metric or f"forget_train_{metric}"
    retain_metric = retain_metric or f"retain_{metric}"
    first = load_state(state_a, "state_a")
    second = load_state(state_b, "state_b")
    check_same_layout(first, second, ("state_a", "state_b"))
    probe = copy.deepcopy(unwrap_network(network)).to(device)

    candidates: list[dict[str, Any]] = []
    for alpha in grid:
        probe.load_state_dict(interpolate(first, second, alpha))
        evaluation = suite.evaluate(probe, device, name=f"alpha {alpha:g}", attacks=False)
        values = evaluation.metrics
        for name in (forget_metric, retain_metric):
            if not isinstance(values.get(name), (int, float)):
                raise ValueError(
                    f"choose_alpha: the suite produced no value for {name!r} (it has {sorted(values)}); check the "
                    "metric names and that the validation split has forget and retain samples."
                )
        forget, retain = float(values[forget_metric]), float(values[retain_metric])
        reached = forget <= forget_level if lower_forget_is_more else forget >= forget_level
        candidates.append(
            {"alpha": alpha, "forget": forget, "retain": retain, "reached": reached, "metrics": dict(values)}
        )
        logger.info("alpha %.3f: %s %.4f, %s %.4f%s", alpha, forget_metric, forget, retain_metric, retain,
                    " (reaches the forget level)" if reached else "")

    reaching = [row for row in candidates if row["reached"]]
    if not reaching:
        closest = min(candidates, key=lambda row: abs(row["forget"] - forget_level))
        raise ValueError(
            f"choose_alpha: no alpha in {grid} reaches the forget level {forget_metric} "
            f"{'<=' if lower_forget_is_more else '>='} {forget_level}; the closest is alpha {closest['alpha']:g} with "
            f"{closest['forget']:.4f}. Relax forget_level or interpolate towards a run that forgets more."
        )
    best = max(reaching, key=lambda row: (row["retain"], -row["alpha"]))
    logger.info("Chose alpha %.3f: %s %.4f, %s %.4f.", best["alpha"], forget_metric, best["forget"], retain_metric,
                best["retain"])
    return AlphaChoice(
        alpha=best["alpha"],
        state=interpolate(first, second, best["alpha"]),
        forget=best["forget"],
        retain=best["retain"],
        candidates=candidates,
    )


def interpolated_network(
    network: nn.Module, state_a: WeightSource, state_b: WeightSource, alpha: float, extrapolate: bool = False
) -> nn.Module:
    """Return a copy of ``network`` with the weights :func:`interpolate` mixes, in eval mode.

    A bundle config uses it as its ``network_def`` (``"_target_": "monai_unlearn.steering.interpolated_network"``).

    Raises:
        ValueError: as :func:`interpolate`, or when the weights do not fit ``network``.
    """
    mixed = interpolate(state_a, state_b, alpha, extrapolate)
    result = copy.deepcopy(unwrap_network(network))
    try:
        result.load_state_dict(mixed)
    except RuntimeError as error:
        raise ValueError(
            f"The interpolated weights do not fit {type(result).__name__} ({str(error).splitlines()[0]}); pass the "
            "network definition both runs were trained with."
        ) from error
    return result.eval()
