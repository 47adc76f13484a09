# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Negative-gradient baselines: gradient ascent on the forget set, alone (NegGrad) or balanced by a retain term (NegGrad+).

In the flow transform -> engine -> inner search -> loss -> handlers, these methods skip the inner search: the outer
step maximises the cross-entropy of the forget samples on their true labels, and NegGrad+ also minimises it on the
retain samples::

    NegGrad:   L = -CE(f(x_f), y_f)
    NegGrad+:  L = beta * CE(f(x_r), y_r) - (1 - beta) * CE(f(x_f), y_f)

The ascent term is unbounded: run long enough, NegGrad drives every forget logit of the true class to minus infinity
and damages the retain classes with it. NegGrad+ trades this off with ``beta``.

For segmentation, the cross-entropy is voxel-wise and the ascent covers the forget region of each forget image
(every voxel when whole images are forgotten).

References: A. Golatkar, A. Achille and S. Soatto, "Eternal Sunshine of the Spotless Net: Selective Forgetting in Deep
Networks", CVPR 2020 (NegGrad); M. Kurmanji, P. Triantafillou, J. Hayes and E. Triantafillou, "Towards Unbounded
Machine Unlearning", NeurIPS 2023 (NegGrad+).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from monai_unlearn.methods import StepOutput, UnlearningBatch

from .common import BaselineMethod, check_number, forget_positions, position_cross_entropy

if TYPE_CHECKING:
    from monai_unlearn.engines.unlearning_trainer import UnlearningTrainer

__all__ = ["NegGrad", "NegGradPlus"]


class NegGrad(BaselineMethod):
    """Gradient ascent on the forget set: ``L = -CE(f(x_f), y_f)``; the retain set is not used.

    It has no setting of its own: the learning rate and the number of passes (the trainer's) decide how far the
    ascent goes.
    """

    name = "neggrad"

    def compute_loss(
        self, trainer: UnlearningTrainer, forget: UnlearningBatch | None, retain: UnlearningBatch | None
    ) -> StepOutput:
        if forget is None or len(forget) == 0:
            raise ValueError(f"{self.name}: an outer step got no forget sample; check the forget loader.")
        logits = trainer.network(forget.images)
        forget_ce = position_cross_entropy(logits, self.targets(forget, logits), forget_positions(forget, logits))
        return StepOutput(loss=-forget_ce, forget_logits=logits, metrics={"forget_loss": float(forget_ce.detach())})


class NegGradPlus(BaselineMethod):
    """NegGrad+ of Kurmanji et al. (2023): ``L = beta * CE_retain - (1 - beta) * CE_forget``.

    Args:
        beta: weight of the retain descent, in [0, 1]; ``1 - beta`` weighs the forget ascent. Default 0.99. The paper
            tunes it per experiment; a value close to 1 keeps the unbounded ascent term from dominating once the
            forget loss has grown.

    Raises:
        ValueError: when ``beta`` is not a number in [0, 1].
    """

    name = "neggrad_plus"

    def __init__(self, beta: float = 0.99) -> None:
        super().__init__()
        self.settings = {"beta": check_number(self.name, "beta", beta, minimum=0.0, maximum=1.0)}

    @property
    def beta(self) -> float:
        return float(self.settings["beta"])

    @property
    def uses_retain(self) -> bool:
        return self.beta > 0

    @property
    def uses_forget(self) -> bool:
        return self.beta < 1

    def compute_loss(
        self, trainer: UnlearningTrainer, forget: UnlearningBatch | None, retain: UnlearningBatch | None
    ) -> StepOutput:
        metrics: dict[str, float] = {}
        loss = None
        forget_logits = retain_logits = None
        if forget is not None and len(forget) > 0 and self.uses_forget:
            forget_logits = trainer.network(forget.images)
            forget_ce = position_cross_entropy(
                forget_logits, self.targets(forget, forget_logits), forget_positions(forget, forget_logits)
            )
            metrics["forget_loss"] = float(forget_ce.detach())
            loss = -(1.0 - self.beta) * forget_ce
        if retain is not None and len(retain) > 0 and self.uses_retain:
            retain_logits = trainer.network(retain.images)
            retain_ce = position_cross_entropy(retain_logits, self.targets(retain, retain_logits))
            metrics["retain_loss"] = float(retain_ce.detach())
            loss = self.beta * retain_ce if loss is None else loss + self.beta * retain_ce
        if loss is None:
            raise ValueError(f"{self.name}: an outer step got neither a forget sample nor a retain sample.")
        return StepOutput(loss=loss, forget_logits=forget_logits, retain_logits=retain_logits, metrics=metrics)
