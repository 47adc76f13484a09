# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Random-labels baseline: train the forget samples towards random wrong classes, optionally with the retain set.

In the flow transform -> engine -> inner search -> loss -> handlers, the random relabelling takes the place of the
inner search: each forget sample (each voxel of its forget region, for segmentation) gets a class drawn uniformly
among the classes other than its label, fresh at every outer step from the trainer's seeded generator, and the outer
step minimises::

    L = CE(f(x_f), y'_f) + phi * CE(f(x_r), y_r),    y'_f uniform over the classes != y_f

Golatkar et al. train on the whole training set with the forget labels resampled, which is ``phi = 1`` with a retain
batch at every step; ``phi = 0`` trains on the relabelled forget samples only.

Reference: A. Golatkar, A. Achille and S. Soatto, "Eternal Sunshine of the Spotless Net: Selective Forgetting in Deep
Networks", CVPR 2020 (the "Random Labels" baseline).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from monai_unlearn.methods import StepOutput, UnlearningBatch

from .common import BaselineMethod, check_number, forget_positions, position_cross_entropy, random_other_labels

if TYPE_CHECKING:
    from monai_unlearn.engines.unlearning_trainer import UnlearningTrainer

__all__ = ["RandomLabels", "random_label_loss"]


def random_label_loss(
    trainer: UnlearningTrainer, forget: UnlearningBatch, method: BaselineMethod
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the cross-entropy of the forget batch against fresh random other labels, and the forget logits.

    Positions outside the forget region of a segmentation batch keep their ground-truth labels and count in the loss.
    """
    logits = trainer.network(forget.images)
    labels = method.targets(forget, logits)
    relabelled = random_other_labels(labels, logits.shape[1], trainer.generator, forget_positions(forget, logits))
    return position_cross_entropy(logits, relabelled), logits


class RandomLabels(BaselineMethod):
    """Train forget samples towards random other classes, plus ``retain_weight`` times the retain cross-entropy.

    Args:
        retain_weight: ``phi >= 0``, weight of the retain term. Default 1 (Golatkar et al. train on the whole
            relabelled training set); 0 turns the retain term off and no retain batch is loaded.

    Raises:
        ValueError: when ``retain_weight`` is negative or not a finite number.
    """

    name = "random_labels"

    def __init__(self, retain_weight: float = 1.0) -> None:
        super().__init__()
        self.settings = {"retain_weight": check_number(self.name, "retain_weight", retain_weight, minimum=0.0)}

    @property
    def retain_weight(self) -> float:
        return float(self.settings["retain_weight"])

    @property
    def uses_retain(self) -> bool:
        return self.retain_weight > 0

    def compute_loss(
        self, trainer: UnlearningTrainer, forget: UnlearningBatch | None, retain: UnlearningBatch | None
    ) -> StepOutput:
        return random_label_step(self, trainer, forget, retain)


def random_label_step(
    method: BaselineMethod, trainer: UnlearningTrainer, forget: UnlearningBatch | None, retain: UnlearningBatch | None
) -> StepOutput:
    """Compute the random-label loss of the forget batch plus ``method.retain_weight`` times the retain cross-entropy.

    Shared by :class:`RandomLabels` and SalUn, which trains towards the same targets through a saliency mask.

    Raises:
        ValueError: when the step has neither a forget sample nor a retain sample.
    """
    metrics: dict[str, float] = {}
    loss = None
    forget_logits = retain_logits = None
    if forget is not None and len(forget) > 0:
        loss, forget_logits = random_label_loss(trainer, forget, method)
        metrics["forget_loss"] = float(loss.detach())
    if retain is not None and len(retain) > 0 and method.uses_retain:
        retain_logits = trainer.network(retain.images)
        retain_ce = position_cross_entropy(retain_logits, method.targets(retain, retain_logits))
        metrics["retain_loss"] = float(retain_ce.detach())
        weighted = method.retain_weight * retain_ce
        loss = weighted if loss is None else loss + weighted
    if loss is None:
        raise ValueError(f"{method.name}: an outer step got neither a forget sample nor a retain sample.")
    return StepOutput(loss=loss, forget_logits=forget_logits, retain_logits=retain_logits, metrics=metrics)
