# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Boundary-based bilevel unlearning with a perturbed sign-gradient inner solver, and its presets.

Each outer step runs the inner search (:class:`~monai_unlearn.inner.BoundarySearch`) on the forget batch with the
frozen original network, then trains the network on the clean forget images towards their boundary labels, plus an
optional retain term::

    L = L_F(f(x_f), y_hat or q) + phi * L_R(f(x_r), y_r or f_0(x_r))

References: G. R. Nahass et al., "Targeted Unlearning Using Perturbed Sign Gradient Methods With Applications On
Medical Images", arXiv:2505.21872 (2025); M. Chen et al., "Boundary Unlearning", CVPR 2023.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from monai_unlearn.inner import BoundarySearch, to_class_indices
from monai_unlearn.losses import forget_loss, retain_loss
from monai_unlearn.optimizers import ClosenessSchedule

from .base import StepOutput, UnlearningBatch, UnlearningMethod

if TYPE_CHECKING:
    from monai_unlearn.engines.unlearning_trainer import UnlearningTrainer

__all__ = ["BoundaryUnlearning", "BOUNDARY_PRESETS", "RETAIN_TARGETS"]

RETAIN_TARGETS = ("label", "distill")

#: Settings of the presets. Keys not listed take the defaults of :class:`BoundaryUnlearning`. ``step_size=None``
#: means ``epsilon`` for one inner step and ``epsilon / sqrt(K)`` for ``K`` steps.
BOUNDARY_PRESETS: dict[str, dict[str, Any]] = {
    # FGSM neighbour search of Boundary Shrink: K = 1, eta = epsilon, gamma = lambda = phi = 0, hard labels.
    "boundary_shrink": dict(steps=1, noise_scale=0.0, closeness=0.0, retain_weight=0.0, soft_targets=False),
    # The paper's default: one perturbed sign step with normal noise of scale 1e-4, no closeness, no retain term.
    "psg": dict(steps=1, noise="normal", noise_scale=1e-4, closeness=0.0, retain_weight=0.0, soft_targets=False),
    # As psg, with a retain batch at every step.
    "psg_retain": dict(steps=1, noise="normal", noise_scale=1e-4, closeness=0.0, retain_weight=1.0, soft_targets=False),
    # Soft top-3 targets at temperature 1, with a retain batch at every step.
    "psg_soft": dict(
        steps=1, noise="normal", noise_scale=1e-4, closeness=0.0, retain_weight=1.0, soft_targets=True, top_k=3
    ),
    # K > 1 steps of size epsilon / sqrt(K), a closeness term that decays as lambda / t, early stop on label flip.
    "psg_multistep": dict(
        steps=5,
        noise="normal",
        noise_scale=1e-4,
        closeness=0.01,
        closeness_schedule="inverse",
        early_stop="flip",
        retain_weight=0.0,
        soft_targets=False,
    ),
}


class BoundaryUnlearning(UnlearningMethod):
    """Boundary unlearning of Nahass et al. (2025), with the presets of :data:`BOUNDARY_PRESETS`.

    Pick a preset and override any of its settings; arguments left as None take the preset's value, then the
    default given below.

    Args:
        preset: ``"boundary_shrink"``, ``"psg"`` (default), ``"psg_retain"``, ``"psg_soft"`` or ``"psg_multistep"``.
        epsilon: L-infinity radius of the inner search in the units the network sees (for example 8/255 for images
            scaled to [0, 1]). Required: it depends on your preprocessing, so there is no default.
        steps: inner steps ``K``.
        step_size: inner step size ``eta``; None gives ``epsilon / sqrt(K)``.
        step_size_schedule: ``"constant"``, ``"inverse_sqrt"`` or ``"inverse_sqrt_total"``.
        noise: ``"normal"``, ``"laplace"``, ``"cauchy"`` or ``"uniform"``.
        noise_scale: noise scale ``gamma``.
        closeness: closeness weight ``lambda``.
        closeness_schedule: ``"constant"``, ``"inverse"``, ``"exponential"`` or ``"linear"`` over outer steps.
        closeness_rate: decay rate of the exponential schedule.
        closeness_total_steps: horizon ``T`` of the linear schedule; None uses the trainer's total outer steps.
        box: ``(low, high)`` valid input range, or None for no box.
        random_start: start the search at a random point of the ball.
        early_stop: ``"flip"``, a probability threshold ``kappa``, or False to run all inner steps (None keeps the
            preset's choice).
        quantize_bits: round inner iterates to a ``2**bits`` grid over ``box`` (8-bit images only).
        soft_targets: train the forget samples towards soft targets instead of hard boundary labels.
        top_k: classes kept in soft targets (default 3).
        temperature: softmax temperature of soft targets (default 1).
        retain_weight: ``phi >= 0``, the weight of the retain term; 0 turns it off and no retain batch is loaded.
        retain_target: ``"label"`` (cross-entropy to true labels) or ``"distill"`` (match the original's outputs).
        distill_temperature: temperature of the distillation retain loss.
        exclude_classes: class indices that boundary labels and soft targets never take, for example ``[2]`` to
            retire segmentation label 2: its voxels (the forget region) are then relabelled to the most likely other
            class at the boundary point. Pair it with a retain term that cannot teach the class again (true labels
            of samples without it, or no retain term); distillation from the original would teach it again.
        region_weight: weight of the forget-region voxels relative to the other voxels of a forget image in the
            forget loss (segmentation with a region map, for example label forgetting, where the region is a small
            part of each image). 1 (default) is the plain mean over voxels.

    Raises:
        ValueError: for an unknown preset, a missing epsilon or an out-of-range setting.
    """

    name = "boundary"

    def __init__(
        self,
        preset: str = "psg",
        epsilon: float | None = None,
        steps: int | None = None,
        step_size: float | None = None,
        step_size_schedule: str | None = None,
        noise: str | None = None,
        noise_scale: float | None = None,
        closeness: float | None = None,
        closeness_schedule: str | None = None,
        closeness_rate: float | None = None,
        closeness_total_steps: int | None = None,
        box: tuple[float, float] | list[float] | None = None,
        random_start: bool | None = None,
        early_stop: str | float | bool | None = None,
        quantize_bits: int | None = None,
        soft_targets: bool | None = None,
        top_k: int | None = None,
        temperature: float | None = None,
        retain_weight: float | None = None,
        retain_target: str | None = None,
        distill_temperature: float | None = None,
        exclude_classes: list[int] | tuple[int, ...] | None = None,
        region_weight: float = 1.0,
    ) -> None:
        if preset not in BOUNDARY_PRESETS:
            raise ValueError(f"Unknown boundary unlearning preset {preset!r}: expected one of {list(BOUNDARY_PRESETS)}.")
        if epsilon is None:
            raise ValueError(
                f"Preset {preset!r} needs epsilon, the search radius in the units the network sees "
                "(for example 8/255 for images scaled to [0, 1]); set it in the method settings (--epsilon of "
                "monai-unlearn revise)."
            )
        defaults: dict[str, Any] = dict(
            steps=1,
            step_size=None,
            step_size_schedule="constant",
            noise="normal",
            noise_scale=0.0,
            closeness=0.0,
            closeness_schedule="constant",
            closeness_rate=None,
            closeness_total_steps=None,
            random_start=False,
            early_stop=None,
            quantize_bits=None,
            soft_targets=False,
            top_k=3,
            temperature=1.0,
            retain_weight=0.0,
            retain_target="label",
            distill_temperature=1.0,
        )
        defaults.update(BOUNDARY_PRESETS[preset])
        given = dict(
            steps=steps,
            step_size=step_size,
            step_size_schedule=step_size_schedule,
            noise=noise,
            noise_scale=noise_scale,
            closeness=closeness,
            closeness_schedule=closeness_schedule,
            closeness_rate=closeness_rate,
            closeness_total_steps=closeness_total_steps,
            random_start=random_start,
            early_stop=early_stop,
            quantize_bits=quantize_bits,
            soft_targets=soft_targets,
            top_k=top_k,
            temperature=temperature,
            retain_weight=retain_weight,
            retain_target=retain_target,
            distill_temperature=distill_temperature,
        )
        settings = {key: (value if value is not None else defaults[key]) for key, value in given.items()}
        if settings["retain_target"] not in RETAIN_TARGETS:
            raise ValueError(f"Invalid retain_target {settings['retain_target']!r}: expected one of {RETAIN_TARGETS}.")
        phi = settings["retain_weight"]
        if not isinstance(phi, (int, float)) or not math.isfinite(phi) or phi < 0:
            raise ValueError(f"Invalid retain_weight: {phi!r}. It must be a finite number >= 0.")
        if settings["distill_temperature"] <= 0:
            raise ValueError(f"Invalid distill_temperature: {settings['distill_temperature']!r}. It must be > 0.")
        self.preset = preset
        self.epsilon = float(epsilon)
        self.box = None if box is None else (float(box[0]), float(box[1]))
        self.settings = settings
        self.exclude_classes = None if exclude_classes is None else list(exclude_classes)
        if isinstance(region_weight, bool) or not isinstance(region_weight, (int, float)) or not (
            math.isfinite(region_weight) and region_weight > 0
        ):
            raise ValueError(f"Invalid region_weight: {region_weight!r}. It must be a finite number > 0.")
        self.region_weight = float(region_weight)
        self.search: BoundarySearch | None = None
        # Build a search with the global generator now so that invalid settings fail at construction time.
        self._build_search(generator=None, total_outer_steps=settings["closeness_total_steps"] or 1)

    def _build_search(self, generator: torch.Generator | None, total_outer_steps: int) -> BoundarySearch:
        s = self.settings
        schedule = ClosenessSchedule(
            s["closeness"],
            kind=s["closeness_schedule"],
            rate=s["closeness_rate"],
            total_steps=s["closeness_total_steps"] or total_outer_steps,
        )
        self.search = BoundarySearch(
            epsilon=self.epsilon,
            steps=s["steps"],
            step_size=s["step_size"],
            step_size_schedule=s["step_size_schedule"],
            noise=s["noise"],
            noise_scale=s["noise_scale"],
            closeness=schedule,
            box=self.box,
            random_start=s["random_start"],
            early_stop=None if s["early_stop"] is False else s["early_stop"],
            quantize_bits=s["quantize_bits"],
            top_k=s["top_k"],
            temperature=s["temperature"],
            generator=generator,
            exclude_classes=self.exclude_classes,
        )
        return self.search

    @property
    def retain_weight(self) -> float:
        return float(self.settings["retain_weight"])

    @property
    def uses_retain(self) -> bool:
        return self.retain_weight > 0

    def setup(self, trainer: UnlearningTrainer) -> None:
        total = trainer.state.max_epochs * trainer.state.epoch_length if trainer.state.epoch_length else 1
        self._build_search(generator=trainer.generator, total_outer_steps=max(1, int(total)))

    def compute_loss(
        self, trainer: UnlearningTrainer, forget: UnlearningBatch | None, retain: UnlearningBatch | None
    ) -> StepOutput:
        if self.search is None:
            raise RuntimeError("BoundaryUnlearning.setup must run before compute_loss.")
        # Loss values stay tensors; the trainer moves all metrics to the host in one transfer after the step.
        metrics: dict[str, float | torch.Tensor] = {}
        loss: torch.Tensor | None = None
        forget_logits = retain_logits = None

        if forget is not None and len(forget) > 0:
            result = self.search(
                trainer.original_network,
                forget.images,
                forget.labels,
                region=forget.region,
                outer_step=max(1, trainer.state.iteration),
                on_inner_step=trainer.fire_inner_iteration_started,
                on_inner_step_completed=trainer.fire_inner_iteration_completed,
            )
            forget_logits = trainer.network(forget.images)
            weights = self._voxel_weights(forget, result.labels)
            if self.settings["soft_targets"]:
                loss_f = forget_loss(forget_logits, soft_targets=result.soft_targets, voxel_weights=weights)
            else:
                loss_f = forget_loss(forget_logits, boundary_labels=result.labels, voxel_weights=weights)
            loss = loss_f
            metrics["forget_loss"] = loss_f.detach()
            metrics["flip_rate"] = result.flip_rate
            metrics["inner_loss_start"] = result.inner_losses[0]
            metrics["inner_loss_end"] = result.inner_losses[-1]

        if self.uses_retain and retain is not None and len(retain) > 0:
            retain_logits = trainer.network(retain.images)
            if self.settings["retain_target"] == "distill":
                with torch.no_grad():
                    teacher = trainer.original_network(retain.images)
                loss_r = retain_loss(retain_logits, teacher_logits=teacher, temperature=self.settings["distill_temperature"])
            else:
                loss_r = retain_loss(retain_logits, labels=to_class_indices(retain.labels, retain_logits))
            metrics["retain_loss"] = loss_r.detach()
            loss = self.retain_weight * loss_r if loss is None else loss + self.retain_weight * loss_r

        if loss is None:
            raise ValueError("An outer step got neither a forget sample nor a retain sample; check the loaders.")
        return StepOutput(loss=loss, forget_logits=forget_logits, retain_logits=retain_logits, metrics=metrics)

    def _voxel_weights(self, forget: UnlearningBatch, boundary_labels: torch.Tensor) -> torch.Tensor | None:
        if self.region_weight == 1.0 or forget.region is None or boundary_labels.ndim == 1:
            return None
        region = forget.region
        if region.ndim == boundary_labels.ndim + 1 and region.shape[1] == 1:
            region = region[:, 0]
        return torch.where(region.bool(), self.region_weight, 1.0).to(torch.float32)

    def config(self) -> dict[str, Any]:
        config = {"name": self.name, "preset": self.preset, "epsilon": self.epsilon, "box": self.box, **self.settings}
        if self.exclude_classes:
            config["exclude_classes"] = list(self.exclude_classes)
        if self.region_weight != 1.0:
            config["region_weight"] = self.region_weight
        return config

    def __repr__(self) -> str:
        return f"BoundaryUnlearning(preset={self.preset!r}, epsilon={self.epsilon}, settings={self.settings})"
