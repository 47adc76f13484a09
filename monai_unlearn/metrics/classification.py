# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Evaluation of a classifier on a loader, split by the forget flag.

Handlers call :func:`evaluate_classifier` before and after a revision; it returns accuracy on the whole loader, on
its forget samples (flag 1) and its retain samples (flag 0), per class, and the per-sample losses that membership
inference attacks read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.engines.utils import default_prepare_batch

from .mia import prediction_confidence, prediction_entropy

__all__ = ["ClassifierEvaluation", "evaluate_classifier", "collect_classifier_outputs"]


@dataclass
class ClassifierEvaluation:
    """Per-sample outputs of a classifier on one loader.

    Attributes:
        logits: ``(N, C)`` float array of network outputs.
        labels: ``(N,)`` integer class labels.
        flags: ``(N,)`` integer forget flags (all 0 when the loader carries none).
        losses: ``(N,)`` per-sample cross-entropy.
        summary: the split's metrics, filled by :func:`evaluate_classifier`.
    """

    logits: np.ndarray
    labels: np.ndarray
    flags: np.ndarray
    losses: np.ndarray
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def predictions(self) -> np.ndarray:
        return self.logits.argmax(axis=1)

    @property
    def confidences(self) -> np.ndarray:
        """Softmax probability of each sample's true label, the feature of the confidence SVC attack."""
        return prediction_confidence(self.logits, self.labels)

    @property
    def entropies(self) -> np.ndarray:
        """Entropy (in nats) of each sample's softmax prediction, the feature of the entropy SVC attack."""
        return prediction_entropy(self.logits)


def _labels_as_indices(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    if labels.ndim == 2 and labels.shape[1] == num_classes and num_classes > 1:
        return labels.argmax(dim=1)
    return labels.reshape(-1).long()


@torch.no_grad()
def collect_classifier_outputs(
    network: torch.nn.Module,
    loader: Iterable,
    device: str | torch.device,
    forget_key: str = "forget",
    prepare_batch: Callable = default_prepare_batch,
) -> ClassifierEvaluation:
    """Run ``network`` in eval mode over ``loader`` and gather logits, labels, forget flags and per-sample losses.

    The network's train/eval mode is restored afterwards.
    """
    was_training = network.training
    network.eval()
    logits_list, labels_list, flags_list = [], [], []
    try:
        for batchdata in loader:
            images, labels = prepare_batch(batchdata, device)[:2]
            images = images.as_tensor() if hasattr(images, "as_tensor") else images
            logits = network(images).float()
            labels = _labels_as_indices(torch.as_tensor(labels).to(logits.device), logits.shape[1])
            if isinstance(batchdata, dict) and forget_key in batchdata:
                flags = torch.as_tensor(batchdata[forget_key]).reshape(-1).long()
            else:
                flags = torch.zeros(labels.shape[0], dtype=torch.long)
            logits_list.append(logits.cpu())
            labels_list.append(labels.cpu())
            flags_list.append(flags.cpu())
    finally:
        network.train(was_training)
    if not logits_list:
        raise ValueError("The evaluation loader yielded no batch; check its datalist.")
    logits = torch.cat(logits_list)
    labels = torch.cat(labels_list)
    losses = F.cross_entropy(logits, labels, reduction="none")
    return ClassifierEvaluation(
        logits=logits.numpy(), labels=labels.numpy(), flags=torch.cat(flags_list).numpy(), losses=losses.numpy()
    )


def _accuracy(correct: np.ndarray) -> float | None:
    return float(correct.mean()) if correct.size else None


def evaluate_classifier(
    network: torch.nn.Module,
    loader: Iterable,
    device: str | torch.device,
    forget_key: str = "forget",
    class_names: list[str] | None = None,
    prepare_batch: Callable = default_prepare_batch,
) -> ClassifierEvaluation:
    """Evaluate a classifier and summarise accuracy overall, on forget and retain samples, and per class.

    ``summary`` holds ``accuracy``, ``forget_accuracy`` and ``retain_accuracy`` (None when the loader has no such
    samples), ``mean_loss``, ``forget_mean_loss``, ``retain_mean_loss``, ``per_class_accuracy`` (by class name or
    index) and the sample counts.
    """
    result = collect_classifier_outputs(network, loader, device, forget_key, prepare_batch)
    correct = result.predictions == result.labels
    forget = result.flags == 1
    num_classes = result.logits.shape[1]
    names = class_names if class_names is not None else [str(i) for i in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"Got {len(names)} class names for a network with {num_classes} outputs: {names}.")
    result.summary = {
        "samples": int(correct.size),
        "forget_samples": int(forget.sum()),
        "retain_samples": int((~forget).sum()),
        "accuracy": _accuracy(correct),
        "forget_accuracy": _accuracy(correct[forget]),
        "retain_accuracy": _accuracy(correct[~forget]),
        "mean_loss": float(result.losses.mean()),
        "forget_mean_loss": float(result.losses[forget].mean()) if forget.any() else None,
        "retain_mean_loss": float(result.losses[~forget].mean()) if (~forget).any() else None,
        "per_class_accuracy": {
            names[c]: _accuracy(correct[result.labels == c]) for c in range(num_classes) if (result.labels == c).any()
        },
    }
    return result
