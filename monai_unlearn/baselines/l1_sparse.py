# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""l1-sparse baseline: fine-tune on the retain set with an l1 penalty on the weights whose weight decays over passes.

In the flow transform -> engine -> inner search -> loss -> handlers, this method skips the inner search; each outer
step minimises::

    L = CE(f(x_r), y_r) + gamma_p * ||theta||_1

over the retain batch, where ``||theta||_1`` sums the absolute values of every trainable parameter of the network and
``gamma_p`` is the l1 weight of pass ``p``. Jia et al. found that sparsity makes approximate unlearning closer to
retraining, and that a weight decreasing over the unlearning epochs works better than a constant one; the default
schedule here decays linearly, ``gamma_p = gamma * (1 - (p - 1) / P)`` over ``P`` passes. The forget set is not used.

Reference: J. Jia, J. Liu, P. Ram, Y. Yao, G. Liu, Y. Liu, P. Sharma and S. Liu, "Model Sparsity Can Simplify Machine
Unlearning", NeurIPS 2023.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from monai_unlearn.methods import StepOutput, UnlearningBatch

from .common import BaselineMethod, check_number, position_cross_entropy

if TYPE_CHECKING:
    from monai_unlearn.engines.unlearning_trainer import UnlearningTrainer

__all__ = ["L1Sparse", "L1_SCHEDULES"]

L1_SCHEDULES = ("linear", "constant")


class L1Sparse(BaselineMethod):
    """Retain fine-tuning with an l1 penalty ``gamma_p * ||theta||_1`` (Jia et al., 2023).

    Args:
        l1_weight: ``gamma > 0``, the l1 weight of the first pass. Default 5e-4.
        schedule: ``"linear"`` (default): ``gamma_p = gamma * (1 - (p - 1) / P)`` for pass ``p`` of ``P``, so the last
            pass still has ``gamma / P``; ``"constant"``: ``gamma`` at every pass.

    Raises:
        ValueError: for a non-positive ``l1_weight`` or an unknown schedule.
    """

    name = "l1_sparse"

    def __init__(self, l1_weight: float = 5e-4, schedule: str = "linear") -> None:
        super().__init__()
        if schedule not in L1_SCHEDULES:
            raise ValueError(f"{self.name}: invalid schedule {schedule!r}; expected one of {L1_SCHEDULES}.")
        self.settings = {
            "l1_weight": check_number(self.name, "l1_weight", l1_weight, minimum=0.0, minimum_inclusive=False),
            "schedule": schedule,
        }

    @property
    def uses_forget(self) -> bool:
        return False

    @property
    def uses_retain(self) -> bool:
        return True

    def weight_at(self, current_pass: int, total_passes: int) -> float:
        """Return the l1 weight of pass ``current_pass`` (1-based) out of ``total_passes``."""
        gamma = float(self.settings["l1_weight"])
        if self.settings["schedule"] == "constant" or total_passes <= 0:
            return gamma
        progress = min(max(current_pass - 1, 0), total_passes - 1) / total_passes
        return gamma * (1.0 - progress)

    def compute_loss(
        self, trainer: UnlearningTrainer, forget: UnlearningBatch | None, retain: UnlearningBatch | None
    ) -> StepOutput:
        if retain is None or len(retain) == 0:
            raise ValueError(f"{self.name}: an outer step got no retain sample; check the retain loader.")
        logits = trainer.network(retain.images)
        retain_ce = position_cross_entropy(logits, self.targets(retain, logits))
        weight = self.weight_at(int(trainer.state.epoch), int(trainer.state.max_epochs or 0))
        l1_norm = torch.stack([p.abs().sum() for p in trainer.network.parameters() if p.requires_grad]).sum()
        loss = retain_ce + weight * l1_norm
        metrics = {"retain_loss": float(retain_ce.detach()), "l1_norm": float(l1_norm.detach()), "l1_weight": weight}
        return StepOutput(loss=loss, retain_logits=logits, metrics=metrics)
