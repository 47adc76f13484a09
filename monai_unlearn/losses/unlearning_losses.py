# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Outer-step losses of unlearning: forget loss towards boundary targets and retain loss.

In the flow transform -> engine -> inner search -> loss -> handlers, these losses turn the trainable network's
outputs and the inner search's targets into the scalar that the outer optimizer minimises::

    L = L_F(f(x_f), boundary labels or soft targets) + phi * L_R(f(x_r), labels or f_0(x_r))

Every loss works for classification outputs ``(B, C)`` and segmentation outputs ``(B, C, *spatial)``; for
segmentation it is the mean over voxels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["soft_cross_entropy", "forget_loss", "retain_loss", "distillation_loss", "per_sample_cross_entropy"]


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy ``-sum_c q_c log softmax(z)_c`` of logits ``z`` against probability targets ``q``.

    It differs from ``KL(q || softmax(z))`` by the entropy of ``q``, a constant, so both have the same gradient.
    ``reduction`` is ``"mean"`` (over samples and voxels), ``"sum"`` or ``"none"`` (shape ``(B, *spatial)``).
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"Invalid reduction {reduction!r}: expected 'mean', 'sum' or 'none'.")
    if logits.shape != targets.shape:
        raise ValueError(f"Soft targets of shape {tuple(targets.shape)} do not match logits {tuple(logits.shape)}.")
    loss = -(targets * F.log_softmax(logits.float(), dim=1)).sum(dim=1)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.mean()


def forget_loss(
    logits: torch.Tensor,
    boundary_labels: torch.Tensor | None = None,
    soft_targets=None,
    voxel_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Forget loss ``L_F``: cross-entropy to hard boundary labels, or soft cross-entropy to soft targets.

    Exactly one of ``boundary_labels`` (class indices) and ``soft_targets`` (probabilities) must be given.
    ``voxel_weights`` (segmentation only, shape ``(B, *spatial)``) turns the mean over voxels into the weighted mean
    ``sum(w * l) / sum(w)``, for example to weigh the voxels of a forget region more than the rest of the image.
    """
    if (boundary_labels is None) == (soft_targets is None):
        raise ValueError("forget_loss needs exactly one of boundary_labels and soft_targets.")
    if soft_targets is not None:
        per_voxel = soft_cross_entropy(logits, soft_targets, reduction="none")
    else:
        per_voxel = F.cross_entropy(logits.float(), boundary_labels, reduction="none")
    if voxel_weights is None:
        return per_voxel.mean()
    if voxel_weights.shape != per_voxel.shape:
        raise ValueError(
            f"Voxel weights of shape {tuple(voxel_weights.shape)} do not match the per-voxel loss of shape "
            f"{tuple(per_voxel.shape)}."
        )
    weights = voxel_weights.to(per_voxel.dtype)
    return (per_voxel * weights).sum() / weights.sum().clamp(min=torch.finfo(per_voxel.dtype).tiny)


def distillation_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Knowledge-distillation loss ``T^2 * KL(softmax(t / T) || softmax(s / T))``, averaged over samples and voxels.

    The ``T^2`` factor keeps the gradient scale independent of the temperature (Hinton et al., 2015).
    """
    if temperature <= 0:
        raise ValueError(f"Invalid distillation temperature: {temperature!r}. It must be > 0.")
    teacher = torch.softmax(teacher_logits.detach().float() / temperature, dim=1)
    log_student = F.log_softmax(logits.float() / temperature, dim=1)
    log_teacher = torch.log(teacher.clamp_min(1e-12))
    per_position = (teacher * (log_teacher - log_student)).sum(dim=1)
    return per_position.mean() * temperature**2


def retain_loss(
    logits: torch.Tensor,
    labels: torch.Tensor | None = None,
    teacher_logits: torch.Tensor | None = None,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Retain loss ``L_R``: cross-entropy to the true labels, or distillation from the original network.

    Exactly one of ``labels`` (class indices) and ``teacher_logits`` (outputs of the frozen original) must be given.
    """
    if (labels is None) == (teacher_logits is None):
        raise ValueError("retain_loss needs exactly one of labels and teacher_logits.")
    if teacher_logits is not None:
        return distillation_loss(logits, teacher_logits, temperature)
    return F.cross_entropy(logits.float(), labels)


def per_sample_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per sample, shape ``(B,)``; for segmentation the mean over each sample's voxels."""
    loss = F.cross_entropy(logits.float(), labels, reduction="none")
    return loss if loss.ndim == 1 else loss.flatten(1).mean(dim=1)
