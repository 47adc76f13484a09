# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Relearn time: how many fine-tuning steps on the forget set bring the forget metric back to the original's level.

A model that only hides the forget set (for example by suppressing one output) relearns it in a few steps, because
the knowledge is still in its weights. A model that never learned it (the retrain oracle) needs many more. The
measure fine-tunes a copy of the network, so the network passed in is never changed. It sits with the other
evaluation metrics, after the revision in the flow (transform -> engine -> inner search -> loss -> handlers).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from monai.engines.utils import default_prepare_batch
from torch.nn.modules.batchnorm import _BatchNorm

from monai_unlearn.engines.unlearning_trainer import unwrap_network

__all__ = ["RelearnResult", "relearn_time", "collect_forget_samples", "RELEARN_OPTIMIZERS"]

logger = logging.getLogger(__name__)

RELEARN_OPTIMIZERS = ("sgd", "adam")


@dataclass
class RelearnResult:
    """Outcome of a relearn-time measurement.

    Attributes:
        steps: fine-tuning steps until the forget metric reached ``target - tolerance``; 0 when it already had; None
            when it did not within ``max_steps``.
        target: the level to reach (the original model's forget metric).
        tolerance: how far below ``target`` still counts as reached.
        max_steps: the step budget.
        start_value: the forget metric before fine-tuning.
        final_value: the forget metric when the measurement stopped.
        curve: ``[step, metric]`` pairs at every evaluation, starting at step 0.
        settings: optimizer, learning rate, momentum, batch size, BatchNorm mode and seed.
    """

    steps: int | None
    target: float
    tolerance: float
    max_steps: int
    start_value: float
    final_value: float
    curve: list[list[float]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def reached(self) -> bool:
        """Whether the target was reached within the budget."""
        return self.steps is not None

    def to_dict(self) -> dict[str, Any]:
        """Return the result as plain JSON-ready values."""
        return {**asdict(self), "reached": self.reached}


def _plain(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.as_tensor() if hasattr(tensor, "as_tensor") else tensor


@torch.no_grad()
def collect_forget_samples(
    loader: Iterable,
    forget_key: str = "forget",
    prepare_batch: Callable = default_prepare_batch,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the images and labels of a loader's forget samples (flag 1), on the CPU.

    A loader whose batches carry no ``forget_key`` is taken to yield forget samples only.

    Raises:
        ValueError: when the loader yields no forget sample.
    """
    images, labels = [], []
    for batchdata in loader:
        batch_images, batch_labels = prepare_batch(batchdata, "cpu")[:2]
        batch_images, batch_labels = _plain(batch_images), _plain(torch.as_tensor(batch_labels))
        if isinstance(batchdata, dict) and forget_key in batchdata:
            keep = torch.as_tensor(_plain(batchdata[forget_key])).reshape(-1).bool()
            batch_images, batch_labels = batch_images[keep], batch_labels[keep]
        images.append(batch_images.cpu())
        labels.append(batch_labels.cpu())
    if not images or sum(len(batch) for batch in images) == 0:
        raise ValueError(f"The relearn loader yielded no forget sample ({forget_key}=1); check the forget rule.")
    return torch.cat(images), torch.cat(labels)


def _class_indices(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    if labels.ndim == 2 and labels.shape[1] == num_classes and num_classes > 1:
        return labels.argmax(dim=1)
    return labels.reshape(-1).long()


@torch.no_grad()
def _accuracy(network: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device) -> float:
    correct = 0
    for start in range(0, len(images), 256):
        logits = network(images[start : start + 256].to(device))
        targets = _class_indices(labels[start : start + 256].to(device), logits.shape[1])
        correct += int((logits.argmax(dim=1) == targets).sum())
    return correct / len(images)


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, _class_indices(labels, logits.shape[1]))


def relearn_time(
    network: torch.nn.Module,
    loader: Iterable,
    target: float,
    device: str | torch.device = "cpu",
    forget_key: str = "forget",
    optimizer: str = "sgd",
    learning_rate: float = 0.01,
    momentum: float = 0.9,
    batch_size: int = 32,
    max_steps: int = 100,
    tolerance: float = 0.0,
    evaluate_every: int = 1,
    batchnorm: str = "eval",
    seed: int = 0,
    prepare_batch: Callable = default_prepare_batch,
    loss_function: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = _cross_entropy,
    metric_function: Callable[..., float] = _accuracy,
) -> RelearnResult:
    """Count the fine-tuning steps on the forget set until the forget metric returns to ``target``.

    A copy of ``network`` is fine-tuned on the forget samples of ``loader`` (those with ``forget_key`` = 1) with
    mini-batches of ``batch_size`` drawn in a seeded random order, epoch after epoch, by SGD with momentum
    (``optimizer="sgd"``, the default: learning rate 0.01, momentum 0.9) or Adam (``"adam"``, betas (0.9, 0.999)).
    Every ``evaluate_every`` steps the metric is computed on all forget samples in eval mode; the measurement stops
    when it reaches ``target - tolerance`` or after ``max_steps`` steps. Pass the original model's forget metric on
    the same samples as ``target``, and compare the steps of the revised model with those of the retrain oracle.

    Args:
        network: the network to measure; it is copied and never changed.
        loader: loader of the forget samples (typically the training evaluation loader, flags included).
        target: the metric level to reach, in [0, 1].
        device: device of the fine-tuning.
        forget_key: batch key of the forget flag.
        optimizer: ``"sgd"`` or ``"adam"``.
        learning_rate: learning rate of the fine-tuning.
        momentum: SGD momentum (ignored by Adam).
        batch_size: fine-tuning mini-batch size.
        max_steps: step budget.
        tolerance: how far below ``target`` counts as reached.
        evaluate_every: steps between evaluations; the step count is then a multiple of it.
        batchnorm: ``"eval"`` (default) keeps BatchNorm layers in eval mode during fine-tuning. Batches of forget
            samples only then leave the running statistics alone, and the measure reflects the weights. ``"train"``
            fine-tunes them in train mode.
        seed: seed of the mini-batch order.
        prepare_batch: function that extracts image and label from a batch, as in MONAI engines.
        loss_function: ``loss_function(outputs, labels)``; cross-entropy on class indices by default.
        metric_function: ``metric_function(network, images, labels, device)``; accuracy by default.

    Returns:
        The :class:`RelearnResult`.

    Raises:
        ValueError: for an invalid setting, or a loader without forget samples.
    """
    if optimizer not in RELEARN_OPTIMIZERS:
        raise ValueError(f"Invalid relearn optimizer {optimizer!r}: expected one of {RELEARN_OPTIMIZERS}.")
    if batchnorm not in ("eval", "train"):
        raise ValueError(f"Invalid batchnorm mode {batchnorm!r} for relearning: expected 'eval' or 'train'.")
    for name, value in (("max_steps", max_steps), ("batch_size", batch_size), ("evaluate_every", evaluate_every)):
        if int(value) < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}.")
    if not 0.0 <= float(target) <= 1.0 or float(tolerance) < 0.0:
        raise ValueError(f"target must be in [0, 1] and tolerance >= 0, got target={target}, tolerance={tolerance}.")
    if float(learning_rate) <= 0.0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate}.")

    device = torch.device(device)
    images, labels = collect_forget_samples(loader, forget_key, prepare_batch)
    model = copy.deepcopy(unwrap_network(network)).to(device)
    model.requires_grad_(True)
    parameters = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "sgd":
        solver: torch.optim.Optimizer = torch.optim.SGD(parameters, lr=learning_rate, momentum=momentum)
    else:
        solver = torch.optim.Adam(parameters, lr=learning_rate)
    generator = torch.Generator().manual_seed(int(seed))
    goal = float(target) - float(tolerance)

    model.eval()
    value = float(metric_function(model, images, labels, device))
    start_value = value
    curve = [[0, value]]
    steps: int | None = 0 if value >= goal else None
    order = torch.randperm(len(images), generator=generator)
    position = 0
    step = 0
    while steps is None and step < max_steps:
        if position >= len(order):
            order, position = torch.randperm(len(images), generator=generator), 0
        batch = order[position : position + batch_size]
        position += batch_size

        model.train()
        if batchnorm == "eval":
            for module in model.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        solver.zero_grad(set_to_none=True)
        loss = loss_function(model(images[batch].to(device)), labels[batch].to(device))
        loss.backward()
        solver.step()
        step += 1

        if step % evaluate_every == 0 or step == max_steps:
            model.eval()
            value = float(metric_function(model, images, labels, device))
            curve.append([step, value])
            if value >= goal:
                steps = step
    logger.debug("Relearning took %s steps (target %.4f, final %.4f).", steps, target, value)
    return RelearnResult(
        steps=steps,
        target=float(target),
        tolerance=float(tolerance),
        max_steps=int(max_steps),
        start_value=start_value,
        final_value=value,
        curve=curve,
        settings={
            "optimizer": optimizer,
            "learning_rate": float(learning_rate),
            "momentum": float(momentum) if optimizer == "sgd" else None,
            "batch_size": int(batch_size),
            "evaluate_every": int(evaluate_every),
            "batchnorm": batchnorm,
            "seed": int(seed),
            "forget_samples": int(len(images)),
        },
    )
