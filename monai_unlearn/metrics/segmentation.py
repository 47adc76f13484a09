# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Evaluation of a segmentation network on a loader of whole cases, split by the forget flag.

Handlers call :func:`evaluate_segmenter` before and after a revision, and on the retrain oracle. It returns per-case
Dice for each foreground label, per-case losses (the mean voxel cross-entropy, which the case-level membership
inference attack reads) and the number of voxels predicted for each label (to check that a retired label is no longer
predicted anywhere). Its summary splits the cases into forget cases (flag 1) and retain cases (flag 0).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.engines.utils import default_prepare_batch
from monai.inferers import Inferer, SimpleInferer
from monai.metrics import compute_dice

from monai_unlearn.inner import to_class_indices

__all__ = ["SegmenterEvaluation", "collect_segmenter_outputs", "evaluate_segmenter"]


@dataclass
class SegmenterEvaluation:
    """Per-case results of a segmentation network on one loader.

    Attributes:
        losses: ``(N,)`` case-mean voxel cross-entropy over all voxels of the network input.
        flags: ``(N,)`` integer forget flags (all 0 when the loader carries none).
        dice: ``(N, C - 1)`` Dice of each foreground label per case. A label absent from both the ground truth and
            the prediction scores 1; absent from the ground truth only, 0.
        predicted_voxels: ``(N, C)`` number of voxels predicted as each class, per case.
        class_names: names of the ``C`` classes, background first.
        summary: the split's metrics, see :func:`evaluate_segmenter`.
    """

    losses: np.ndarray
    flags: np.ndarray
    dice: np.ndarray
    predicted_voxels: np.ndarray
    class_names: list[str]
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def foreground_names(self) -> list[str]:
        return self.class_names[1:]


@torch.no_grad()
def collect_segmenter_outputs(
    network: torch.nn.Module,
    loader: Iterable,
    device: str | torch.device,
    forget_key: str = "forget",
    class_names: list[str] | None = None,
    prepare_batch: Callable = default_prepare_batch,
    inferer: Inferer | Callable | None = None,
) -> SegmenterEvaluation:
    """Run ``network`` in eval mode over whole cases and gather per-case losses, Dice, flags and voxel counts.

    Args:
        network: a segmentation network returning logits ``(B, C, *spatial)``.
        loader: yields batches of whole cases (dicts with image, label and optionally the forget flag).
        device: device of the network.
        forget_key: batch key of the integer forget flag.
        class_names: names of the ``C`` classes, background first; None uses the indices.
        prepare_batch: extracts image and label from a batch, as in MONAI engines.
        inferer: runs the network on a batch of images, for example ``SliceInferer`` for a 2D network on volumes;
            None runs the network once on each whole image (``SimpleInferer``), which suits small volumes that fit
            the network as a whole.

    Raises:
        ValueError: when the loader is empty, the labels do not fit the network's output, or the class names do not
            match the number of outputs.
    """
    inferer = inferer if inferer is not None else SimpleInferer()
    was_training = network.training
    network.eval()
    losses, flags, dice, voxels = [], [], [], []
    num_classes = None
    try:
        for batchdata in loader:
            images, labels = prepare_batch(batchdata, device)[:2]
            images = images.as_tensor() if hasattr(images, "as_tensor") else images
            labels = labels.as_tensor() if hasattr(labels, "as_tensor") else labels
            logits = inferer(images, network).float()
            logits = logits.as_tensor() if hasattr(logits, "as_tensor") else logits
            num_classes = logits.shape[1]
            target = to_class_indices(labels.to(logits.device), logits)
            voxel_loss = F.cross_entropy(logits, target, reduction="none")
            losses.append(voxel_loss.flatten(1).mean(dim=1).cpu())

            predicted = logits.argmax(dim=1)
            predicted_one_hot = F.one_hot(predicted, num_classes).movedim(-1, 1)
            target_one_hot = F.one_hot(target, num_classes).movedim(-1, 1)
            dice.append(
                compute_dice(predicted_one_hot, target_one_hot, include_background=False, ignore_empty=False).cpu()
            )
            voxels.append(predicted_one_hot.flatten(2).sum(dim=2).cpu())
            if isinstance(batchdata, dict) and forget_key in batchdata:
                batch_flags = torch.as_tensor(batchdata[forget_key]).reshape(-1).long()
            else:
                batch_flags = torch.zeros(images.shape[0], dtype=torch.long)
            flags.append(batch_flags.cpu())
    finally:
        network.train(was_training)
    if num_classes is None:
        raise ValueError("The evaluation loader yielded no batch; check its datalist.")
    names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"Got {len(names)} class names for a network with {num_classes} outputs: {names}.")
    return SegmenterEvaluation(
        losses=torch.cat(losses).numpy(),
        flags=torch.cat(flags).numpy(),
        dice=torch.cat(dice).numpy(),
        predicted_voxels=torch.cat(voxels).numpy(),
        class_names=names,
    )


def _mean(values: np.ndarray) -> float | None:
    values = values[~np.isnan(values)] if values.size else values
    return float(values.mean()) if values.size else None


def _per_label(dice: np.ndarray, names: list[str]) -> dict[str, float | None]:
    return {name: _mean(dice[:, index]) for index, name in enumerate(names)}


def evaluate_segmenter(
    network: torch.nn.Module,
    loader: Iterable,
    device: str | torch.device,
    forget_key: str = "forget",
    class_names: list[str] | None = None,
    prepare_batch: Callable = default_prepare_batch,
    inferer: Inferer | Callable | None = None,
) -> SegmenterEvaluation:
    """Evaluate a segmentation network and summarise per-label Dice and case losses on all, forget and retain cases.

    The arguments are those of :func:`collect_segmenter_outputs`; the first six match the ``evaluate_fn`` contract of
    :class:`~monai_unlearn.handlers.UnlearningReport`.

    ``summary`` contains the case counts ``cases``, ``forget_cases`` and ``retain_cases``; the per-label mean Dice
    ``dice``, ``forget_dice`` and ``retain_dice`` (dicts by foreground label name, None for an empty group); the mean
    over foreground labels ``mean_dice``, ``forget_mean_dice`` and ``retain_mean_dice``; the mean case loss
    ``mean_loss``, ``forget_mean_loss`` and ``retain_mean_loss``; ``predicted_voxels`` (total voxels predicted
    as each class) and ``cases_predicting`` (cases with at least one voxel of each class).
    """
    result = collect_segmenter_outputs(network, loader, device, forget_key, class_names, prepare_batch, inferer)
    forget = result.flags == 1
    retain = ~forget
    names = result.foreground_names
    mean_dice = result.dice.mean(axis=1) if result.dice.size else np.zeros(len(result.flags))
    result.summary = {
        "cases": int(forget.size),
        "forget_cases": int(forget.sum()),
        "retain_cases": int(retain.sum()),
        "dice": _per_label(result.dice, names),
        "forget_dice": _per_label(result.dice[forget], names),
        "retain_dice": _per_label(result.dice[retain], names),
        "mean_dice": _mean(mean_dice),
        "forget_mean_dice": _mean(mean_dice[forget]),
        "retain_mean_dice": _mean(mean_dice[retain]),
        "mean_loss": _mean(result.losses),
        "forget_mean_loss": _mean(result.losses[forget]),
        "retain_mean_loss": _mean(result.losses[retain]),
        "predicted_voxels": {
            name: int(result.predicted_voxels[:, c].sum()) for c, name in enumerate(result.class_names)
        },
        "cases_predicting": {
            name: int((result.predicted_voxels[:, c] > 0).sum()) for c, name in enumerate(result.class_names)
        },
    }
    return result
