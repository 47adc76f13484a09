# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Fine-tune baseline: keep training the network on the retain set only, so that it forgets by interference.

In the flow transform -> engine -> inner search -> loss -> handlers, this method skips the inner search: each outer
step is a cross-entropy step on the retain batch, and the forget batch is not used (the trainer does not even pass it
to the method). How much the network forgets depends on the learning rate and the number of passes; with small steps
it forgets little, which is why the baseline is reported.

Reference: A. Golatkar, A. Achille and S. Soatto, "Eternal Sunshine of the Spotless Net: Selective Forgetting in Deep
Networks", CVPR 2020 (the "Fine-tune" baseline: fine-tune the trained weights on the retain set for a few epochs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from monai_unlearn.methods import StepOutput, UnlearningBatch

from .common import BaselineMethod, position_cross_entropy

if TYPE_CHECKING:
    from monai_unlearn.engines.unlearning_trainer import UnlearningTrainer

__all__ = ["FineTune"]


class FineTune(BaselineMethod):
    """Fine-tune on the retain set: ``L = CE(f(x_r), y_r)``, voxel-wise for segmentation.

    It has no setting of its own; the learning rate and the number of passes are the trainer's (the bundle's optimizer
    and ``max_epochs``). Under ``pairing="flag"`` one pass covers the retain samples of the training loader once.
    """

    name = "finetune"

    @property
    def uses_forget(self) -> bool:
        return False

    @property
    def uses_retain(self) -> bool:
        return True

    def compute_loss(
        self, trainer: UnlearningTrainer, forget: UnlearningBatch | None, retain: UnlearningBatch | None
    ) -> StepOutput:
        if retain is None or len(retain) == 0:
            raise ValueError(f"{self.name}: an outer step got no retain sample; check the retain loader.")
        logits = trainer.network(retain.images)
        loss = position_cross_entropy(logits, self.targets(retain, logits))
        return StepOutput(loss=loss, retain_logits=logits, metrics={"retain_loss": float(loss.detach())})
