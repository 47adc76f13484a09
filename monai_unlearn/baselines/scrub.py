# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""SCRUB: a student that obeys the frozen original (the teacher) on the retain set and disobeys it on the forget set.

In the flow transform -> engine -> inner search -> loss -> handlers, SCRUB replaces the inner search with the frozen
original's outputs. The trainable network (the student, initialised from the teacher) minimises::

    alpha * d(x_r) + gamma * CE(f(x_r), y_r) - d(x_f),    d(x) = KL(p_teacher(x) || p_student(x)) at temperature T

by alternating two kinds of steps, as Kurmanji et al. do: max steps, which ascend ``d`` on forget batches, and min
steps, which descend ``alpha * d + gamma * CE`` on retain batches. Max steps only happen at the start; the min steps
that follow restore the retain performance that the max steps damaged.

Mapping to the unlearning trainer, where one pass is one pass over the trainer's loader: SCRUB's epoch with a max
step becomes two passes, a max pass (a max step on each forget batch) followed by a min pass (a min step on each
retain batch). With ``max_passes = M`` the passes go max, min, max, min, ... for the first ``2 M`` passes, then min
only. Under ``pairing="flag"`` a max pass covers every forget sample once and a min pass every retain sample once,
as SCRUB's epochs do. Under ``pairing="loaders"`` a min pass takes as many retain batches as the forget loader has
batches, which is fewer than a whole retain epoch when the retain set is larger.

For segmentation, the divergence and the cross-entropy are voxel-wise; the max step covers the forget region of each
forget image (every voxel when whole images are forgotten).

Reference: M. Kurmanji, P. Triantafillou, J. Hayes and E. Triantafillou, "Towards Unbounded Machine Unlearning",
NeurIPS 2023.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from monai_unlearn.methods import StepOutput, UnlearningBatch

from .common import (
    BaselineMethod,
    check_integer,
    check_number,
    forget_positions,
    position_cross_entropy,
    teacher_divergence,
    zero_loss,
)

if TYPE_CHECKING:
    from monai_unlearn.engines.unlearning_trainer import UnlearningTrainer

__all__ = ["SCRUB"]


class SCRUB(BaselineMethod):
    """SCRUB of Kurmanji et al. (2023): alternating max steps on the forget set and min steps on the retain set.

    Args:
        alpha: weight of the retain divergence ``d(x_r)`` in min steps (paper's alpha). Default 0.001.
        gamma: weight of the retain cross-entropy in min steps (paper's gamma). Default 0.99.
        temperature: softmax temperature ``T`` of the divergence, scaled by ``T^2``. Default 4.
        max_passes: number of max passes (SCRUB's "max steps", one max pass per SCRUB epoch), each followed by a
            min pass. Default 1; the passes after the first ``2 * max_passes`` are min passes.

    Raises:
        ValueError: for a negative weight, a non-positive temperature or a negative ``max_passes``.

    Note:
        A max pass whose batch has no forget sample (possible under ``pairing="flag"``) takes a min step on the
        batch's retain samples instead. A min pass whose batch has no retain sample takes an empty step.
    """

    name = "scrub"

    def __init__(self, alpha: float = 0.001, gamma: float = 0.99, temperature: float = 4.0, max_passes: int = 1) -> None:
        super().__init__()
        self.settings = {
            "alpha": check_number(self.name, "alpha", alpha, minimum=0.0),
            "gamma": check_number(self.name, "gamma", gamma, minimum=0.0),
            "temperature": check_number(self.name, "temperature", temperature, minimum=0.0, minimum_inclusive=False),
            "max_passes": check_integer(self.name, "max_passes", max_passes, minimum=0),
        }
        if self.settings["alpha"] == 0 and self.settings["gamma"] == 0:
            raise ValueError(f"{self.name}: alpha and gamma are both 0, so min steps would learn nothing; set one > 0.")

    @property
    def uses_retain(self) -> bool:
        return True

    def is_max_pass(self, current_pass: int) -> bool:
        """Return whether pass ``current_pass`` (1-based) takes max steps on the forget set."""
        return current_pass <= 2 * int(self.settings["max_passes"]) and current_pass % 2 == 1

    def compute_loss(
        self, trainer: UnlearningTrainer, forget: UnlearningBatch | None, retain: UnlearningBatch | None
    ) -> StepOutput:
        teacher = self.original(trainer)
        if self.is_max_pass(int(trainer.state.epoch)) and forget is not None and len(forget) > 0:
            return self._max_step(trainer.network, teacher, forget)
        if retain is not None and len(retain) > 0:
            return self._min_step(trainer.network, teacher, retain)
        return StepOutput(loss=zero_loss(trainer.network), metrics={})

    def _max_step(self, student: torch.nn.Module, teacher: torch.nn.Module, forget: UnlearningBatch) -> StepOutput:
        logits = student(forget.images)
        with torch.no_grad():
            teacher_logits = teacher(forget.images)
        divergence = teacher_divergence(
            logits, teacher_logits, self.settings["temperature"], forget_positions(forget, logits)
        )
        metrics = {"forget_divergence": float(divergence.detach()), "max_step": 1.0}
        return StepOutput(loss=-divergence, forget_logits=logits, metrics=metrics)

    def _min_step(self, student: torch.nn.Module, teacher: torch.nn.Module, retain: UnlearningBatch) -> StepOutput:
        logits = student(retain.images)
        with torch.no_grad():
            teacher_logits = teacher(retain.images)
        divergence = teacher_divergence(logits, teacher_logits, self.settings["temperature"])
        retain_ce = position_cross_entropy(logits, self.targets(retain, logits))
        loss = self.settings["alpha"] * divergence + self.settings["gamma"] * retain_ce
        metrics = {"retain_divergence": float(divergence.detach()), "retain_loss": float(retain_ce.detach()), "max_step": 0.0}
        return StepOutput(loss=loss, retain_logits=logits, metrics=metrics)
