# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""An ignite metric for classification accuracy split by the forget flag, reduced across processes under DDP.

It is the streaming counterpart of :func:`~monai_unlearn.metrics.evaluate_classifier` for MONAI evaluators: attach it
to a ``SupervisedEvaluator`` whose loader tags samples with :class:`~monai_unlearn.transforms.TagForgetd`, and it
reports accuracy on all samples, on forget samples (flag 1), on retain samples (flag 0), and per class, summed over
all processes with ``ignite.distributed`` when the evaluator runs under ``torch.distributed``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from ignite.engine import Engine
from ignite.exceptions import NotComputableError
from ignite.metrics import Metric
from ignite.metrics.metric import reinit__is_reduced, sync_all_reduce

__all__ = ["ForgetSplitAccuracy"]


def _as_tensor(values: Any) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        return values.as_tensor() if hasattr(values, "as_tensor") else values
    if isinstance(values, Sequence) and values and isinstance(values[0], torch.Tensor):
        return torch.stack([v.as_tensor() if hasattr(v, "as_tensor") else v for v in values])
    return torch.as_tensor(values)


class ForgetSplitAccuracy(Metric):
    """Accuracy on all, forget and retain samples and per class, from ``(y_pred, y, flags)`` batches.

    ``compute`` returns a dictionary, which ignite also spreads into ``engine.state.metrics``:
    ``accuracy``, ``forget_accuracy``, ``retain_accuracy`` (None when that side has no sample),
    ``per_class_accuracy`` (class name or index to accuracy, for classes with samples), ``forget_samples`` and
    ``retain_samples``. Counts are kept as ``(2, num_classes)`` tensors of correct and total samples by forget flag
    and class, and summed over processes with ``sync_all_reduce`` before ``compute``.

    The output transform returns ``(y_pred, y)`` or ``(y_pred, y, flags)``. ``y_pred`` holds logits, probabilities or
    one-hot predictions ``(B, C)`` (or class indices ``(B,)``); ``y`` holds class indices or one-hot labels. Lists of
    per-sample tensors, as MONAI's ``from_engine(["pred", "label"])`` gives, are stacked. Without ``flags`` the flags
    are read from ``engine.state.batch[forget_key]``: MONAI engines keep the batch there, decollated into a list of
    dictionaries after ``MODEL_COMPLETED``.

    Args:
        num_classes: number of classes.
        forget_key: batch key of the integer forget flag.
        class_names: names of the classes in index order, used as keys of ``per_class_accuracy``.
        output_transform: maps ``engine.state.output`` to ``(y_pred, y)`` or ``(y_pred, y, flags)``.
        device: device of the counters (the process's device under DDP with NCCL).

    Raises:
        ValueError: for a non-positive ``num_classes``, class names that do not match it, or, during updates, flags
            other than 0 and 1, mismatched lengths, class indices out of range, or a batch without forget flags.
    """

    required_output_keys = None

    def __init__(
        self,
        num_classes: int,
        forget_key: str = "forget",
        class_names: Sequence[str] | None = None,
        output_transform: Callable = lambda output: output,
        device: str | torch.device = torch.device("cpu"),
    ) -> None:
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}.")
        if class_names is not None and len(class_names) != int(num_classes):
            raise ValueError(f"Got {len(class_names)} class names for {num_classes} classes: {list(class_names)}.")
        self.num_classes = int(num_classes)
        self.forget_key = forget_key
        self.class_names = list(class_names) if class_names is not None else None
        super().__init__(output_transform=output_transform, device=device)

    @reinit__is_reduced
    def reset(self) -> None:
        self._correct = torch.zeros((2, self.num_classes), dtype=torch.float64, device=self._device)
        self._total = torch.zeros((2, self.num_classes), dtype=torch.float64, device=self._device)

    def _flags_from_batch(self, batch: Any) -> torch.Tensor:
        if isinstance(batch, Mapping) and self.forget_key in batch:
            return _as_tensor(batch[self.forget_key]).reshape(-1)
        if isinstance(batch, Sequence) and batch and all(isinstance(item, Mapping) for item in batch):
            if all(self.forget_key in item for item in batch):
                return torch.stack([_as_tensor(item[self.forget_key]).reshape(()) for item in batch])
        raise ValueError(
            f"The batch has no forget flag {self.forget_key!r}; tag the evaluation samples with "
            "monai_unlearn.transforms.TagForgetd, or return (y_pred, y, flags) from output_transform."
        )

    @torch.no_grad()
    def iteration_completed(self, engine: Engine) -> None:
        """Update the counts from ``engine.state.output`` and, when the output has no flags, ``engine.state.batch``."""
        output = self._output_transform(engine.state.output)
        if len(output) == 2:
            output = (output[0], output[1], self._flags_from_batch(engine.state.batch))
        self.update(output)

    @reinit__is_reduced
    def update(self, output: Sequence[Any]) -> None:
        """Add one batch ``(y_pred, y, flags)`` to the counts."""
        y_pred, y, flags = (_as_tensor(value) for value in output)
        predicted = y_pred.argmax(dim=1) if y_pred.ndim == 2 and y_pred.shape[1] > 1 else y_pred.reshape(-1).long()
        one_hot = y.ndim == 2 and y.shape[1] == self.num_classes and self.num_classes > 1
        labels = y.argmax(dim=1) if one_hot else y.reshape(-1).long()
        flags = flags.reshape(-1).long()
        if not predicted.shape[0] == labels.shape[0] == flags.shape[0]:
            raise ValueError(
                f"Got {predicted.shape[0]} predictions, {labels.shape[0]} labels and {flags.shape[0]} forget flags; "
                "they must describe the same samples."
            )
        if flags.numel() and not bool(((flags == 0) | (flags == 1)).all()):
            raise ValueError(f"Forget flags must be 0 or 1, got values {sorted(set(flags.tolist()))}.")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(
                f"Labels must be class indices in [0, {self.num_classes - 1}], got {sorted(set(labels.tolist()))}."
            )
        correct = (predicted == labels).to(torch.float64)
        index = (flags * self.num_classes + labels).to(self._device)
        self._correct.view(-1).index_add_(0, index, correct.to(self._device))
        self._total.view(-1).index_add_(0, index, torch.ones_like(correct, device=self._device))

    @sync_all_reduce("_correct", "_total")
    def compute(self) -> dict[str, Any]:
        """Return the accuracies and counts over all processes.

        Raises:
            NotComputableError: when no sample was seen.
        """
        total = float(self._total.sum())
        if total == 0:
            raise NotComputableError("ForgetSplitAccuracy must have at least one sample before it can be computed.")

        def ratio(correct: torch.Tensor, count: torch.Tensor) -> float | None:
            count_value = float(count.sum())
            return float(correct.sum()) / count_value if count_value else None

        names = self.class_names if self.class_names is not None else [str(c) for c in range(self.num_classes)]
        per_class = {
            names[c]: ratio(self._correct[:, c], self._total[:, c])
            for c in range(self.num_classes)
            if float(self._total[:, c].sum()) > 0
        }
        return {
            "accuracy": ratio(self._correct, self._total),
            "forget_accuracy": ratio(self._correct[1], self._total[1]),
            "retain_accuracy": ratio(self._correct[0], self._total[0]),
            "per_class_accuracy": per_class,
            "forget_samples": int(self._total[1].sum()),
            "retain_samples": int(self._total[0].sum()),
        }
