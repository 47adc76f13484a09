"""Tests of the forget and retain losses of the outer unlearning step."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from monai_unlearn.losses import (
    distillation_loss,
    forget_loss,
    per_sample_cross_entropy,
    retain_loss,
    soft_cross_entropy,
)


def random_logits(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def random_probabilities(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.softmax(2.0 * random_logits(*shape, seed=seed), dim=1)


def entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """Entropy over the channel dimension, with 0 log 0 = 0."""
    return -torch.xlogy(probabilities, probabilities).sum(dim=1)


# --- soft cross-entropy -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(6, 4), (2, 3, 5, 5)], ids=["classification", "segmentation"])
def test_soft_cross_entropy_is_kl_plus_entropy(shape):
    logits = random_logits(*shape)
    targets = random_probabilities(*shape)

    loss = soft_cross_entropy(logits, targets, reduction="none")

    log_probabilities = F.log_softmax(logits, dim=1)
    kl = F.kl_div(log_probabilities, targets, reduction="none").sum(dim=1)
    expected = kl + entropy(targets)
    assert loss.shape == expected.shape, f"reduction='none' returned shape {tuple(loss.shape)}, not {expected.shape}"
    assert torch.allclose(loss, expected, atol=1e-5), (
        f"soft cross-entropy must equal KL(q || p) + H(q); max difference {float((loss - expected).abs().max())}"
    )


def test_soft_cross_entropy_with_top_k_zeros():
    logits = random_logits(4, 5)
    targets = torch.tensor([[0.7, 0.3, 0.0, 0.0, 0.0]]).repeat(4, 1)

    loss = soft_cross_entropy(logits, targets, reduction="none")

    kl = F.kl_div(F.log_softmax(logits, dim=1), targets, reduction="none").sum(dim=1)
    expected = kl + entropy(targets)
    assert bool(torch.isfinite(loss).all()), f"zero target entries must not give NaN or inf losses: {loss.tolist()}"
    assert torch.allclose(loss, expected, atol=1e-5), f"loss {loss.tolist()} != KL + H {expected.tolist()}"


def test_soft_cross_entropy_equals_ce_for_one_hot():
    logits = random_logits(5, 3)
    labels = torch.tensor([0, 2, 1, 1, 0])

    loss = soft_cross_entropy(logits, F.one_hot(labels, 3).float())

    expected = F.cross_entropy(logits, labels)
    assert float(loss) == pytest.approx(float(expected), rel=1e-6), (
        f"soft cross-entropy to one-hot targets is {float(loss)}, hard cross-entropy is {float(expected)}"
    )


def test_soft_cross_entropy_reductions():
    logits = random_logits(2, 3, 4, 4)
    targets = random_probabilities(2, 3, 4, 4)

    per_voxel = soft_cross_entropy(logits, targets, reduction="none")
    mean = soft_cross_entropy(logits, targets, reduction="mean")
    total = soft_cross_entropy(logits, targets, reduction="sum")

    assert per_voxel.shape == (2, 4, 4), f"reduction='none' must return (B, H, W), got {tuple(per_voxel.shape)}"
    assert float(mean) == pytest.approx(float(per_voxel.mean()), rel=1e-6), "reduction='mean' is not the voxel mean"
    assert float(total) == pytest.approx(float(per_voxel.sum()), rel=1e-6), "reduction='sum' is not the voxel sum"


def test_soft_cross_entropy_rejects_unknown_reduction():
    # "batchmean" is a valid reduction of torch's kl_div, so a caller may pass it here by mistake.
    logits = random_logits(2, 3)

    with pytest.raises(ValueError, match="'batchmean'"):
        soft_cross_entropy(logits, torch.softmax(logits, dim=1), reduction="batchmean")


def test_soft_cross_entropy_shape_mismatch():
    with pytest.raises(ValueError, match=re.escape("Soft targets of shape (4, 2) do not match logits (4, 3)")):
        soft_cross_entropy(torch.zeros(4, 3), torch.zeros(4, 2))


# --- forget and retain losses -----------------------------------------------------------------------------------


def test_forget_loss_hard_labels():
    logits = random_logits(4, 3)
    labels = torch.tensor([2, 0, 1, 2])

    loss = forget_loss(logits, boundary_labels=labels)

    assert float(loss) == pytest.approx(float(F.cross_entropy(logits, labels))), (
        "forget_loss with boundary labels must be the mean cross-entropy"
    )


def test_forget_loss_soft_targets():
    logits = random_logits(4, 3)
    targets = random_probabilities(4, 3)

    loss = forget_loss(logits, soft_targets=targets)

    assert float(loss) == pytest.approx(float(soft_cross_entropy(logits, targets))), (
        "forget_loss with soft targets must be the mean soft cross-entropy"
    )


def test_forget_loss_needs_one_target():
    with pytest.raises(ValueError, match="exactly one of boundary_labels and soft_targets"):
        forget_loss(torch.zeros(2, 3))


def test_forget_loss_rejects_both_targets():
    logits = torch.zeros(2, 3)

    with pytest.raises(ValueError, match="exactly one of boundary_labels and soft_targets"):
        forget_loss(logits, boundary_labels=torch.tensor([0, 1]), soft_targets=torch.full((2, 3), 1.0 / 3.0))


def test_retain_loss_true_labels():
    logits = random_logits(4, 3)
    labels = torch.tensor([1, 1, 0, 2])

    loss = retain_loss(logits, labels=labels)

    assert float(loss) == pytest.approx(float(F.cross_entropy(logits, labels))), (
        "retain_loss with labels must be the mean cross-entropy"
    )


def test_retain_loss_teacher_is_distillation():
    logits = random_logits(4, 3)
    teacher = random_logits(4, 3, seed=5)

    loss = retain_loss(logits, teacher_logits=teacher, temperature=2.0)

    expected = distillation_loss(logits, teacher, temperature=2.0)
    assert float(loss) == pytest.approx(float(expected)), "retain_loss with teacher logits must be distillation_loss"


def test_retain_loss_needs_one_target():
    with pytest.raises(ValueError, match="exactly one of labels and teacher_logits"):
        retain_loss(torch.zeros(2, 3))


def test_retain_loss_rejects_both_targets():
    logits = torch.zeros(2, 3)

    with pytest.raises(ValueError, match="exactly one of labels and teacher_logits"):
        retain_loss(logits, labels=torch.tensor([0, 1]), teacher_logits=torch.zeros(2, 3))


# --- distillation -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_distillation_zero_for_identical_logits(temperature):
    logits = random_logits(3, 4, 6, 6)

    loss = distillation_loss(logits, logits.clone(), temperature=temperature)

    assert abs(float(loss)) < 1e-6, f"distillation of a student equal to its teacher must be 0, got {float(loss)}"


@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0])
def test_distillation_has_temperature_squared_scale(temperature):
    student = random_logits(5, 4)
    teacher = random_logits(5, 4, seed=7)

    loss = distillation_loss(student, teacher, temperature=temperature)

    kl = F.kl_div(
        F.log_softmax(student / temperature, dim=1), F.softmax(teacher / temperature, dim=1), reduction="batchmean"
    )
    expected = temperature**2 * float(kl)
    assert float(loss) == pytest.approx(expected, rel=1e-5), (
        f"distillation at T={temperature} is {float(loss)}, expected T^2 * KL = {expected}"
    )


def test_distillation_does_not_backpropagate_to_teacher():
    student = random_logits(3, 4).requires_grad_(True)
    teacher = random_logits(3, 4, seed=2).requires_grad_(True)

    distillation_loss(student, teacher, temperature=2.0).backward()

    assert student.grad is not None, "the distillation loss gave the student no gradient"
    assert teacher.grad is None, "the distillation loss must detach the teacher logits"


def test_distillation_rejects_non_positive_temperature():
    with pytest.raises(ValueError, match=re.escape("Invalid distillation temperature: 0.0")):
        distillation_loss(torch.zeros(2, 3), torch.zeros(2, 3), temperature=0.0)


# --- per-sample cross-entropy -----------------------------------------------------------------------------------


def test_per_sample_cross_entropy_classification():
    logits = random_logits(5, 3)
    labels = torch.tensor([0, 1, 2, 1, 0])

    losses = per_sample_cross_entropy(logits, labels)

    expected = F.cross_entropy(logits, labels, reduction="none")
    assert losses.shape == (5,), f"per-sample losses for (B, C) logits must have shape (5,), got {tuple(losses.shape)}"
    assert torch.allclose(losses, expected), f"per-sample losses {losses.tolist()} != {expected.tolist()}"


def test_per_sample_cross_entropy_segmentation():
    logits = random_logits(2, 3, 4, 5)
    labels = torch.randint(0, 3, (2, 4, 5), generator=torch.Generator().manual_seed(3))

    losses = per_sample_cross_entropy(logits, labels)

    expected = torch.stack([F.cross_entropy(logits[i : i + 1], labels[i : i + 1]) for i in range(2)])
    assert losses.shape == (2,), f"per-sample losses for (B, C, H, W) logits must have shape (2,), got {losses.shape}"
    assert torch.allclose(losses, expected), (
        f"segmentation per-sample losses {losses.tolist()} must be each image's voxel mean {expected.tolist()}"
    )


def test_per_sample_cross_entropy_3d_segmentation():
    logits = random_logits(2, 2, 3, 3, 3)
    labels = torch.randint(0, 2, (2, 3, 3, 3), generator=torch.Generator().manual_seed(4))

    losses = per_sample_cross_entropy(logits, labels)

    assert losses.shape == (2,), f"per-sample losses for 3-D logits must have shape (2,), got {tuple(losses.shape)}"
