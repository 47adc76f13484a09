# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Shared pieces of the baseline unlearning methods: the base class, argument checks and position-wise losses.

In the flow transform -> engine -> inner search -> loss -> handlers, the baselines replace the inner search and the
boundary losses: each baseline's :meth:`compute_loss` turns the forget and retain batches that the unlearning trainer
pairs into the loss of one outer step. The helpers here work for classification outputs ``(B, C)`` and for
segmentation outputs ``(B, C, *spatial)``, where every loss is a voxel-wise loss averaged over the positions it
covers (the forget region of a forget image, or every voxel).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from monai_unlearn.inner import to_class_indices
from monai_unlearn.methods import UnlearningBatch, UnlearningMethod

if TYPE_CHECKING:
    from monai_unlearn.engines.unlearning_trainer import UnlearningTrainer

__all__ = [
    "BaselineMethod",
    "check_number",
    "check_integer",
    "forget_positions",
    "masked_mean",
    "position_cross_entropy",
    "sample_cross_entropy",
    "teacher_divergence",
    "random_other_labels",
    "zero_loss",
    "functional_gradients",
    "squared_sample_gradients",
]


def check_number(
    method: str,
    name: str,
    value: Any,
    minimum: float | None = None,
    maximum: float | None = None,
    minimum_inclusive: bool = True,
) -> float:
    """Return ``value`` as a float after checking that it is a finite number in the given range.

    Raises:
        ValueError: naming the method, the setting and the value, when the value is not a finite number or is out of
            range.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{method}: invalid {name} {value!r}; it must be a finite number.")
    value = float(value)
    if minimum is not None and (value < minimum or (value == minimum and not minimum_inclusive)):
        bound = ">=" if minimum_inclusive else ">"
        raise ValueError(f"{method}: invalid {name} {value!r}; it must be {bound} {minimum}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"{method}: invalid {name} {value!r}; it must be <= {maximum}.")
    return value


def check_integer(method: str, name: str, value: Any, minimum: int = 0) -> int:
    """Return ``value`` after checking that it is an integer ``>= minimum``.

    Raises:
        ValueError: naming the method, the setting and the value.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{method}: invalid {name} {value!r}; it must be an integer >= {minimum}.")
    return value


def forget_positions(batch: UnlearningBatch, logits: torch.Tensor) -> torch.Tensor | None:
    """Return the boolean map ``(B, *spatial)`` of the positions a forget term covers, or None for all positions.

    Classification outputs ``(B, C)`` have one position per sample, so the result is None. For segmentation it is the
    batch's forget region, or None when whole images are forgotten.

    Raises:
        ValueError: when the region's shape does not match the output without its channel dimension.
    """
    if logits.ndim <= 2 or batch.region is None:
        return None
    region = batch.region
    if region.ndim == logits.ndim and region.shape[1] == 1:
        region = region[:, 0]
    expected = (logits.shape[0], *logits.shape[2:])
    if tuple(region.shape) != expected:
        raise ValueError(
            f"The forget region has shape {tuple(batch.region.shape)} but the network output {tuple(logits.shape)} "
            f"needs {expected}; write the region at the network's output resolution."
        )
    return region.bool()


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` over the positions where ``mask`` is True (all positions when ``mask`` is None).

    An empty mask gives a zero that stays attached to the graph, so that a backward pass through it is valid.
    """
    if mask is None:
        return values.mean()
    if not bool(mask.any()):
        return (values * 0.0).sum()
    return values[mask].mean()


def position_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy of ``logits`` against class indices ``targets``, averaged over the positions in ``mask``.

    Works for ``(B, C)`` with targets ``(B,)`` and for ``(B, C, *spatial)`` with targets ``(B, *spatial)``.
    """
    values = F.cross_entropy(logits.float(), targets, reduction="none")
    return masked_mean(values, mask)


def sample_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy per sample, shape ``(B,)``: for segmentation, the mean over the sample's positions in ``mask``.

    A sample with no position in ``mask`` gets 0.
    """
    values = F.cross_entropy(logits.float(), targets, reduction="none")
    if values.ndim == 1:
        return values
    values = values.flatten(1)
    if mask is None:
        return values.mean(dim=1)
    weights = mask.flatten(1).to(values.dtype)
    return (values * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


def teacher_divergence(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``T^2 * KL(softmax(t / T) || softmax(s / T))`` per position, averaged over the positions in ``mask``.

    The KL divergence goes from the teacher's distribution to the student's, as in knowledge distillation (Hinton et
    al., 2015) and in SCRUB. The ``T^2`` factor keeps the gradient scale independent of the temperature.
    """
    teacher = torch.softmax(teacher_logits.detach().float() / temperature, dim=1)
    log_teacher = torch.log_softmax(teacher_logits.detach().float() / temperature, dim=1)
    log_student = torch.log_softmax(student_logits.float() / temperature, dim=1)
    per_position = (teacher * (log_teacher - log_student)).sum(dim=1)
    return masked_mean(per_position, mask) * temperature**2


def random_other_labels(
    labels: torch.Tensor, num_classes: int, generator: torch.Generator | None, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Return labels drawn uniformly among the classes other than ``labels``, at the positions in ``mask``.

    Positions outside ``mask`` keep their label. ``labels`` are class indices ``(B,)`` or ``(B, *spatial)``.

    Raises:
        ValueError: when there are fewer than two classes, so no other class exists.
    """
    if num_classes < 2:
        raise ValueError(f"Random relabelling needs at least 2 classes, the network has {num_classes}.")
    device = labels.device
    if generator is not None and generator.device != device:
        offsets = torch.randint(1, num_classes, labels.shape, generator=generator, device=generator.device).to(device)
    else:
        offsets = torch.randint(1, num_classes, labels.shape, generator=generator, device=device)
    # Adding an offset in [1, C-1] modulo C gives every other class with the same probability 1 / (C - 1).
    relabelled = (labels + offsets) % num_classes
    if mask is None:
        return relabelled
    return torch.where(mask, relabelled, labels)


def zero_loss(network: torch.nn.Module) -> torch.Tensor:
    """Return a zero loss attached to every trainable parameter, for an outer step that has nothing to learn."""
    parameters = [p for p in network.parameters() if p.requires_grad]
    if not parameters:
        raise ValueError("The network has no trainable parameter.")
    return sum(p.sum() for p in parameters) * 0.0


def functional_gradients(
    network: torch.nn.Module, loss_of_logits: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Return the gradient of ``loss_of_logits(network(images))`` with respect to each named parameter.

    The gradient is taken with ``torch.func`` on detached copies of the parameters, so it works on the frozen
    original network (whose parameters do not require gradients) and leaves every ``.grad`` untouched. The network
    runs in its current mode, so call it in eval mode to keep BatchNorm running statistics unchanged.
    """
    parameters = {name: p.detach() for name, p in network.named_parameters()}

    def loss(params: dict[str, torch.Tensor]) -> torch.Tensor:
        return loss_of_logits(torch.func.functional_call(network, params, (images,)))

    return torch.func.grad(loss)(parameters)


def squared_sample_gradients(
    network: torch.nn.Module,
    loss_of_logits: Callable[..., torch.Tensor],
    images: torch.Tensor,
    *sample_inputs: torch.Tensor,
    chunk_size: int | None = None,
) -> dict[str, torch.Tensor]:
    """Return, per named parameter, the sum over the samples of ``images`` of the squared per-sample gradient.

    Each sample's loss is ``loss_of_logits(logits, *inputs)``, where ``logits`` are the network's outputs for that
    sample alone and ``inputs`` are the sample's rows of ``sample_inputs`` (targets, masks), all with a batch
    dimension of 1. Per-sample gradients come from ``torch.func.vmap`` over ``torch.func.grad``, on detached copies of
    the parameters, so ``.grad`` stays untouched. ``chunk_size`` bounds how many samples are differentiated at once
    (memory grows with it). The network runs in its current mode: use eval mode.

    Raises:
        RuntimeError: when ``torch.func`` cannot differentiate the network sample by sample.
    """
    parameters = {name: p.detach() for name, p in network.named_parameters()}

    def sample_loss(params: dict[str, torch.Tensor], image: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
        logits = torch.func.functional_call(network, params, (image.unsqueeze(0),))
        return loss_of_logits(logits, *(value.unsqueeze(0) for value in inputs))

    in_dims = (None, 0, *([0] * len(sample_inputs)))
    per_sample = torch.func.vmap(torch.func.grad(sample_loss), in_dims=in_dims, chunk_size=chunk_size)
    try:
        gradients = per_sample(parameters, images, *sample_inputs)
    except RuntimeError as error:
        raise RuntimeError(
            f"Per-sample gradients through torch.func failed for {type(network).__name__} ({error}); "
            "use the batch estimate instead (importance='batch')."
        ) from error
    return {name: gradient.pow(2).sum(dim=0) for name, gradient in gradients.items()}


class BaselineMethod(UnlearningMethod):
    """Base class of the baselines: settings recorded for reports, and access to the frozen original network.

    Subclasses store their validated settings in ``self.settings``; :meth:`config` reports them with the method's
    name.
    """

    name = "baseline"

    def __init__(self) -> None:
        self.settings: dict[str, Any] = {}

    def config(self) -> dict[str, Any]:
        return {"name": self.name, **self.settings}

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.settings.items())
        return f"{type(self).__name__}({settings})"

    def original(self, trainer: UnlearningTrainer) -> torch.nn.Module:
        """Return the trainer's frozen original network.

        Raises:
            RuntimeError: when the trainer has not built it yet (the method is used outside ``trainer.run()``).
        """
        if trainer.original_network is None:
            raise RuntimeError(f"{self.name}: the trainer has no frozen original network yet; call trainer.run().")
        return trainer.original_network

    @staticmethod
    def targets(batch: UnlearningBatch, logits: torch.Tensor) -> torch.Tensor:
        """Return the batch's labels as class indices shaped like ``logits`` without its channel dimension."""
        return to_class_indices(batch.labels, logits)

