# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Perturbed sign-gradient optimizer over input tensors.

This is the inner solver of boundary-based unlearning: it moves input images, not network weights, towards the
decision boundary of a frozen network. It sits between the inner search (:mod:`monai_unlearn.inner`), which computes
the input gradient, and the projection onto the allowed neighbourhood of the clean image.

Source: G. R. Nahass et al., "Targeted Unlearning Using Perturbed Sign Gradient Methods With Applications On Medical
Images", arXiv:2505.21872 (2025), which extends the FGSM neighbour search of Boundary Shrink (M. Chen et al.,
"Boundary Unlearning", CVPR 2023).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch.optim import Optimizer

__all__ = ["PerturbedSignGradient", "NOISE_LAWS", "STEP_SIZE_SCHEDULES", "sample_noise", "step_size_at"]

NOISE_LAWS = ("normal", "laplace", "cauchy", "uniform")
STEP_SIZE_SCHEDULES = ("constant", "inverse_sqrt", "inverse_sqrt_total")

# Open-interval margin for the uniform draws that feed the inverse CDFs, so that no draw maps to an infinite value.
_UNIFORM_MARGIN = 1e-7


def sample_noise(
    law: str, shape: Sequence[int], *, generator: torch.Generator | None, device: Any, dtype: torch.dtype
) -> torch.Tensor:
    """Draw zero-median, symmetric noise of unit scale.

    The laws are the standard normal, the Laplace law with scale 1, the standard Cauchy law and the uniform law on
    (-1, 1). All draws come from ``torch.rand`` or ``torch.randn`` so that a ``torch.Generator`` makes them repeatable.

    Args:
        law: one of ``"normal"``, ``"laplace"``, ``"cauchy"``, ``"uniform"``.
        shape: shape of the returned tensor.
        generator: random number generator on ``device``, or None for the global generator.
        device: device of the returned tensor.
        dtype: floating point type of the returned tensor.

    Raises:
        ValueError: when ``law`` is not one of :data:`NOISE_LAWS`.
    """
    if law == "normal":
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)
    if law not in NOISE_LAWS:
        raise ValueError(f"Invalid noise law {law!r}: expected one of {NOISE_LAWS}.")
    # Inverse-CDF sampling from u uniform on the open interval (-0.5, 0.5).
    u = torch.rand(shape, generator=generator, device=device, dtype=dtype)
    u = u.clamp_(_UNIFORM_MARGIN, 1.0 - _UNIFORM_MARGIN) - 0.5
    if law == "uniform":
        return 2.0 * u
    if law == "laplace":
        return -torch.sign(u) * torch.log1p(-2.0 * u.abs())
    return torch.tan(math.pi * u)


def step_size_at(lr: float, schedule: str, step: int, total_steps: int | None) -> float:
    """Return the step size ``eta_k`` of inner step ``step`` (0-based).

    ``"constant"`` gives ``lr``; ``"inverse_sqrt"`` gives ``lr / sqrt(k + 1)``; ``"inverse_sqrt_total"`` gives
    ``lr / sqrt(K)`` for every step, with ``K = total_steps``. The two decaying schedules are the ones under which the
    sign-gradient iterates reach an approximately stationary point of the inner objective.
    """
    if schedule == "constant":
        return lr
    if schedule == "inverse_sqrt":
        return lr / math.sqrt(step + 1)
    if schedule == "inverse_sqrt_total":
        if total_steps is None:
            raise ValueError("step size schedule 'inverse_sqrt_total' needs total_steps, got None.")
        return lr / math.sqrt(total_steps)
    raise ValueError(f"Invalid step size schedule {schedule!r}: expected one of {STEP_SIZE_SCHEDULES}.")


def _check_finite_non_negative(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise ValueError(f"Invalid {name}: {value!r}. It must be a finite number >= 0.")


class PerturbedSignGradient(Optimizer):
    """Perturbed sign-gradient ascent (or descent) on input tensors, with projection onto an L-infinity ball and a box.

    For each parameter ``x'`` (an input tensor with ``requires_grad=True``) whose ``.grad`` holds ``g``, the gradient
    of a loss ``l`` with respect to ``x'``, one step does::

        d = sign(g - lambda * (x' - x) + gamma * z)          # maximize=True (default)
        x' <- proj_{B(x, epsilon) and box}(x' + eta_k * d)

    where ``x`` is the anchor (the clean image), ``z`` is noise of the chosen law with unit scale, ``lambda`` is the
    closeness weight and ``eta_k`` the step size of step ``k``. The closeness term is the gradient of
    ``-(lambda / 2) * ||x' - x||^2``, so a positive ``lambda`` always pulls the iterate back towards ``x``. With
    ``maximize=False`` the step is ``x' <- proj(x' - eta_k * sign(g + lambda * (x' - x) + gamma * z))``, a descent
    on ``l + (lambda / 2) * ||x' - x||^2``, which again pulls towards ``x``.

    ``steps=1``, ``lr=epsilon``, ``noise_scale=0`` and ``closeness=0`` is the FGSM neighbour search of Boundary Shrink.

    The anchor of a parameter is a copy of its value at the first :meth:`step`, unless :meth:`set_anchor` gave one
    before (for example when the search starts from a random point of the ball).

    Reference: G. R. Nahass et al., arXiv:2505.21872 (2025); M. Chen et al., "Boundary Unlearning", CVPR 2023.

    Args:
        params: input tensors to optimize (or dicts defining parameter groups).
        lr: base step size ``eta`` in the units the network sees. Must be > 0.
        epsilon: radius of the L-infinity ball around the anchor. None disables the ball.
        box: ``(low, high)`` bounds of valid intensities in the units the network sees, for example ``(0, 1)`` for
            images scaled to [0, 1]. None disables the box. Dataset statistics are never assumed: pass the range of
            your own preprocessing.
        noise: noise law of ``z``: ``"normal"``, ``"laplace"``, ``"cauchy"`` or ``"uniform"`` (on (-1, 1)).
        noise_scale: ``gamma >= 0``, the scale of the noise. 0 gives the plain sign-gradient method.
        closeness: ``lambda >= 0``, the weight of the closeness term. Schedules over outer steps are applied by the
            caller through :class:`~monai_unlearn.optimizers.ClosenessSchedule`, which writes ``group["closeness"]``.
        maximize: True (default) ascends the loss, as the boundary search does; False descends it.
        lr_schedule: ``"constant"``, ``"inverse_sqrt"`` (``eta / sqrt(k + 1)``) or ``"inverse_sqrt_total"``
            (``eta / sqrt(K)``, needs ``total_steps``).
        total_steps: number of inner steps ``K``, needed by ``"inverse_sqrt_total"``.
        quantize_bits: round each iterate to the grid of ``2**bits`` levels spanning ``box`` after the projection.
            Use 8 for 8-bit images only; needs ``box``. Iterates stay inside the ball when the anchor lies on the grid.
        generator: ``torch.Generator`` on the device of the parameters, for repeatable noise.

    Raises:
        ValueError: when a hyper-parameter is out of range; the message names the value and the valid range.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float,
        epsilon: float | None = None,
        box: Sequence[float] | None = None,
        noise: str = "normal",
        noise_scale: float = 0.0,
        closeness: float = 0.0,
        maximize: bool = True,
        lr_schedule: str = "constant",
        total_steps: int | None = None,
        quantize_bits: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not math.isfinite(lr) or lr <= 0:
            raise ValueError(f"Invalid lr (step size): {lr!r}. It must be a finite number > 0.")
        if epsilon is not None:
            if not isinstance(epsilon, (int, float)) or isinstance(epsilon, bool) or not math.isfinite(epsilon) or epsilon <= 0:
                raise ValueError(f"Invalid epsilon: {epsilon!r}. It must be a finite number > 0, or None for no ball.")
        if box is not None:
            box = self._check_box(box)
        if noise not in NOISE_LAWS:
            raise ValueError(f"Invalid noise law {noise!r}: expected one of {NOISE_LAWS}.")
        _check_finite_non_negative("noise_scale", noise_scale)
        _check_finite_non_negative("closeness", closeness)
        if lr_schedule not in STEP_SIZE_SCHEDULES:
            raise ValueError(f"Invalid lr_schedule {lr_schedule!r}: expected one of {STEP_SIZE_SCHEDULES}.")
        if total_steps is not None and (not isinstance(total_steps, int) or isinstance(total_steps, bool) or total_steps < 1):
            raise ValueError(f"Invalid total_steps: {total_steps!r}. It must be an integer >= 1.")
        if lr_schedule == "inverse_sqrt_total" and total_steps is None:
            raise ValueError("lr_schedule 'inverse_sqrt_total' needs total_steps (the number of inner steps K).")
        if quantize_bits is not None:
            if not isinstance(quantize_bits, int) or isinstance(quantize_bits, bool) or not 1 <= quantize_bits <= 16:
                raise ValueError(f"Invalid quantize_bits: {quantize_bits!r}. Use an integer in [1, 16], e.g. 8.")
            if box is None:
                raise ValueError("quantize_bits needs box=(low, high): the grid spans the valid intensity range.")
        defaults = dict(
            lr=float(lr),
            epsilon=epsilon,
            box=box,
            noise=noise,
            noise_scale=float(noise_scale),
            closeness=float(closeness),
            maximize=bool(maximize),
            lr_schedule=lr_schedule,
            total_steps=total_steps,
            quantize_bits=quantize_bits,
        )
        super().__init__(params, defaults)
        self.generator = generator

    @staticmethod
    def _check_box(box: Sequence[float]) -> tuple[float, float]:
        if len(box) != 2:
            raise ValueError(f"Invalid box: {box!r}. Expected a pair (low, high).")
        low, high = float(box[0]), float(box[1])
        if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
            raise ValueError(f"Invalid box: {box!r}. Expected finite low < high.")
        return low, high

    def set_anchor(self, param: torch.Tensor, anchor: torch.Tensor) -> None:
        """Set the centre of the ball (the clean image) of ``param``; by default it is ``param`` at the first step."""
        if anchor.shape != param.shape:
            raise ValueError(f"anchor shape {tuple(anchor.shape)} does not match parameter shape {tuple(param.shape)}.")
        self.state[param]["anchor"] = anchor.detach().clone()

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Perform one perturbed sign-gradient step on every parameter that has a gradient.

        Args:
            closure: optional callable that re-evaluates the loss and its gradient; it runs with gradients enabled.

        Returns:
            The value returned by ``closure``, or None.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                if param.grad.is_sparse:
                    raise RuntimeError("PerturbedSignGradient does not support sparse gradients.")
                self._step_one(param, group)
        return loss

    def _step_one(self, param: torch.Tensor, group: dict) -> None:
        state = self.state[param]
        if "anchor" not in state:
            state["anchor"] = param.detach().clone()
        if "step" not in state:
            state["step"] = 0
        anchor = state["anchor"]
        box = group["box"]
        if state["step"] == 0 and box is not None:
            self._check_anchor_in_box(anchor, box)

        direction = param.grad.detach().clone()
        closeness = group["closeness"]
        if closeness > 0:
            # Gradient of -(lambda/2)||x' - x||^2 for ascent; of +(lambda/2)||x' - x||^2 for descent.
            pull = param.detach() - anchor
            direction.add_(pull, alpha=-closeness if group["maximize"] else closeness)
        if group["noise_scale"] > 0:
            noise = sample_noise(
                group["noise"], direction.shape, generator=self.generator, device=direction.device, dtype=direction.dtype
            )
            direction.add_(noise, alpha=group["noise_scale"])

        eta = step_size_at(group["lr"], group["lr_schedule"], state["step"], group["total_steps"])
        param.add_(torch.sign(direction), alpha=eta if group["maximize"] else -eta)
        self._project(param, anchor, group)
        state["step"] += 1

    @staticmethod
    def _check_anchor_in_box(anchor: torch.Tensor, box: tuple[float, float]) -> None:
        low, high = box
        tolerance = 1e-6 * max(1.0, high - low)
        amin, amax = float(anchor.min()), float(anchor.max())
        if amin < low - tolerance or amax > high + tolerance:
            raise ValueError(
                f"The clean image has values in [{amin:.6g}, {amax:.6g}], outside box=({low:g}, {high:g}). "
                "Set box to the intensity range of the tensors the network receives (after your preprocessing)."
            )

    @staticmethod
    def _project(param: torch.Tensor, anchor: torch.Tensor, group: dict) -> None:
        epsilon, box = group["epsilon"], group["box"]
        if epsilon is not None:
            torch.maximum(param, anchor - epsilon, out=param)
            torch.minimum(param, anchor + epsilon, out=param)
        if box is not None:
            param.clamp_(box[0], box[1])
        bits = group["quantize_bits"]
        if bits is not None:
            low, high = box
            grid = (high - low) / (2**bits - 1)
            param.sub_(low).div_(grid).round_().mul_(grid).add_(low)
            if epsilon is not None:
                # Rounding may leave the ball by up to half a grid step when the anchor is off the grid:
                # move such coordinates one grid step back towards the anchor.
                outside = (param - anchor).abs() > epsilon + 1e-6 * grid
                param.sub_(torch.sign(param - anchor) * grid * outside)
            param.clamp_(low, high)
