# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""SalUn: random-label unlearning that updates only the weights most salient to the forget set.

In the flow transform -> engine -> inner search -> loss -> handlers, SalUn adds a step before the first outer step
and a gradient mask to every outer step:

1. Weight saliency (in :meth:`SalUn.setup`): the gradient of the forget loss at the original weights,
   ``g = grad_theta CE(theta_0; D_f)``, summed over the whole forget set with the frozen original in eval mode. The
   mask keeps the weights whose ``|g|`` is among the largest ``keep_fraction`` of all the network's weights (one
   global threshold, as the paper's hard threshold ``m = 1(|g| >= gamma)``).
2. Unlearning: the random-labels objective ``CE(f(x_f), y'_f) + alpha * CE(f(x_r), y_r)`` (see
   :mod:`monai_unlearn.baselines.random_labels`), where only salient weights move: the gradients are multiplied by
   the mask before each optimizer step, and the non-salient weights are reset to their original values before each
   outer step, after each pass and at the end, so that optimizer terms that ignore the gradient (weight decay) cannot
   move them either. The result is ``theta = m * theta_u + (1 - m) * theta_0``.

For segmentation, the saliency loss and the random labels are voxel-wise over each forget image's forget region.

Reference: C. Fan, J. Liu, Y. Zhang, E. Wong, D. Wei and S. Liu, "SalUn: Empowering Machine Unlearning via
Gradient-based Weight Saliency in Both Image Classification and Generation", ICLR 2024.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import torch

from monai_unlearn.engines.unlearning_trainer import unwrap_network
from monai_unlearn.methods import StepOutput, UnlearningBatch

from .common import (
    BaselineMethod,
    check_number,
    forget_positions,
    functional_gradients,
    sample_cross_entropy,
)
from .random_labels import random_label_step

if TYPE_CHECKING:
    from monai_unlearn.engines.unlearning_trainer import UnlearningTrainer

__all__ = ["SalUn", "saliency_mask"]

logger = logging.getLogger(__name__)


def saliency_mask(gradients: dict[str, torch.Tensor], keep_fraction: float) -> dict[str, torch.Tensor]:
    """Return boolean masks that keep the ``keep_fraction`` of entries with the largest ``|gradient|``, over all tensors.

    Exactly ``ceil(keep_fraction * N)`` of the ``N`` entries are kept; ties at the threshold are broken by position.
    """
    names = list(gradients)
    magnitudes = torch.cat([gradients[name].detach().abs().flatten().float() for name in names])
    keep = min(magnitudes.numel(), max(1, math.ceil(keep_fraction * magnitudes.numel())))
    flat_mask = torch.zeros_like(magnitudes, dtype=torch.bool)
    flat_mask[torch.topk(magnitudes, keep, sorted=False).indices] = True
    masks: dict[str, torch.Tensor] = {}
    offset = 0
    for name in names:
        size = gradients[name].numel()
        masks[name] = flat_mask[offset : offset + size].view_as(gradients[name])
        offset += size
    return masks


class SalUn(BaselineMethod):
    """SalUn of Fan et al. (ICLR 2024): saliency-masked random-label training.

    Args:
        keep_fraction: fraction of the network's weights that the saliency mask keeps trainable, in (0, 1].
            Default 0.5 (the paper's default mask keeps half of the weights).
        retain_weight: ``alpha >= 0``, weight of the retain cross-entropy. Default 1; 0 trains on the relabelled
            forget samples only and loads no retain batch.

    Raises:
        ValueError: for a ``keep_fraction`` outside (0, 1] or a negative ``retain_weight``; at setup, for an empty
            forget set.
    """

    name = "salun"

    def __init__(self, keep_fraction: float = 0.5, retain_weight: float = 1.0) -> None:
        super().__init__()
        self.settings = {
            "keep_fraction": check_number(
                self.name, "keep_fraction", keep_fraction, minimum=0.0, maximum=1.0, minimum_inclusive=False
            ),
            "retain_weight": check_number(self.name, "retain_weight", retain_weight, minimum=0.0),
        }
        self.masks: dict[str, torch.Tensor] | None = None

    @property
    def retain_weight(self) -> float:
        return float(self.settings["retain_weight"])

    @property
    def uses_retain(self) -> bool:
        return self.retain_weight > 0

    # ------------------------------------------------------------------------------------------------ saliency
    def setup(self, trainer: UnlearningTrainer) -> None:
        if self.masks is not None:
            # Restored by load_state_dict: a resumed run keeps the mask of the original run.
            return
        original = self.original(trainer)
        total: dict[str, torch.Tensor] | None = None
        forget_samples = 0
        for forget, _ in trainer.iterate_batches(retain=False):
            if forget is None or len(forget) == 0:
                continue

            def forget_loss(logits: torch.Tensor, batch: UnlearningBatch = forget) -> torch.Tensor:
                targets = self.targets(batch, logits)
                return sample_cross_entropy(logits, targets, forget_positions(batch, logits)).sum()

            gradients = functional_gradients(original, forget_loss, forget.images)
            total = gradients if total is None else {name: total[name] + gradients[name] for name in total}
            forget_samples += len(forget)
        if total is None:
            raise ValueError(f"{self.name}: the forget set is empty, so there is no saliency to compute.")
        self.masks = saliency_mask(total, self.settings["keep_fraction"])
        kept = sum(int(mask.sum()) for mask in self.masks.values())
        size = sum(mask.numel() for mask in self.masks.values())
        logger.info(
            "SalUn saliency from %d forget samples: %d of %d weights (%.1f %%) are trainable.",
            forget_samples,
            kept,
            size,
            100.0 * kept / size,
        )

    def _network_parameters(self, trainer: UnlearningTrainer) -> dict[str, torch.nn.Parameter]:
        return dict(unwrap_network(trainer.network).named_parameters())

    def _check_masks(self) -> dict[str, torch.Tensor]:
        if self.masks is None:
            raise RuntimeError(f"{self.name}: setup must run before the outer steps (it computes the saliency mask).")
        return self.masks

    @torch.no_grad()
    def reset_non_salient(self, trainer: UnlearningTrainer) -> None:
        """Set every weight outside the saliency mask back to its value in the frozen original."""
        masks = self._check_masks()
        original = dict(self.original(trainer).named_parameters())
        for name, parameter in self._network_parameters(trainer).items():
            mask = masks[name].to(parameter.device)
            parameter.copy_(torch.where(mask, parameter, original[name].to(parameter.dtype)))

    # ------------------------------------------------------------------------------------------------ steps
    def compute_loss(
        self, trainer: UnlearningTrainer, forget: UnlearningBatch | None, retain: UnlearningBatch | None
    ) -> StepOutput:
        self.reset_non_salient(trainer)
        return random_label_step(self, trainer, forget, retain)

    def before_optimizer_step(self, trainer: UnlearningTrainer) -> None:
        masks = self._check_masks()
        for name, parameter in self._network_parameters(trainer).items():
            if parameter.grad is not None:
                parameter.grad.mul_(masks[name].to(parameter.grad.device, parameter.grad.dtype))

    def on_pass_completed(self, trainer: UnlearningTrainer) -> None:
        self.reset_non_salient(trainer)

    def finalize(self, trainer: UnlearningTrainer) -> None:
        if self.masks is not None:
            self.reset_non_salient(trainer)

    # ------------------------------------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {"masks": None if self.masks is None else {k: v.cpu() for k, v in self.masks.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        masks = state.get("masks")
        self.masks = None if masks is None else {k: v.bool() for k, v in masks.items()}
