"""Membership inference attacks on a small network that memorised real chest X-rays.

A wide one-hidden-layer network is trained on 300 PneumoniaMNIST images whose labels were drawn at random, so it can
only fit them by memorising each one (Zhang et al., "Understanding deep learning requires rethinking generalization",
ICLR 2017). Every other set below carries random labels drawn the same way, so members and non-members differ only
in whether the network trained on them.

Margins: an attack score that does not depend on membership has an AUC whose standard deviation is
``sqrt((n1 + n2 + 1) / (12 n1 n2))`` (the Mann-Whitney statistic), 0.033 for 150 against 150 samples. "About chance"
means within 3 of these of 0.5, which a chance-level attack misses with probability 0.3 %; "clearly higher" means
more than 3 of these above 0.5. Budget: about 10 s on one CPU thread (the training takes most of it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import data_dir
from monai_unlearn.metrics import ClassifierEvaluation, attack_summary, run_attacks
from monai_unlearn.metrics.mia import (
    ATTACKS,
    class_matched_indices,
    loss_logistic_attack,
    loss_threshold_attack,
    null_auc_std,
    prediction_confidence,
    prediction_entropy,
    svc_attack,
)

SET_SIZE = 150
TRAIN_STEPS = 1000
CHANCE_MARGIN_IN_STD = 3.0


@dataclass
class MemorisationCase:
    """Per-sample features of a network that memorised ``retain`` and ``forget``; the other sets are unseen."""

    losses: np.ndarray
    confidences: np.ndarray
    entropies: np.ndarray
    logits: np.ndarray
    labels: np.ndarray
    sets: dict[str, np.ndarray]
    train_accuracy: float


@pytest.fixture(scope="module")
def memorised(single_torch_thread) -> MemorisationCase:
    """Train a wide MLP on 300 randomly labelled PneumoniaMNIST images (7x7 averages) until it fits them."""
    path = data_dir() / "medmnist" / "pneumoniamnist_subset_balanced.npz"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    with np.load(path) as arrays:
        images = torch.from_numpy(arrays["train_images"].astype(np.float32) / 255.0).unsqueeze(1)
    features = F.avg_pool2d(images, 4).reshape(len(images), -1)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(features))
    names = ("retain", "forget", "shadow_non_members", "unseen_a", "unseen_b")
    sets = {name: order[i * SET_SIZE : (i + 1) * SET_SIZE] for i, name in enumerate(names)}
    labels = torch.from_numpy(rng.integers(0, 2, size=len(features)))

    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Linear(features.shape[1], 2048), torch.nn.ReLU(), torch.nn.Linear(2048, 2))
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    trained = np.concatenate([sets["retain"], sets["forget"]])
    for _ in range(TRAIN_STEPS):
        loss = F.cross_entropy(network(features[trained]), labels[trained])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        logits = network(features)
    losses = F.cross_entropy(logits, labels, reduction="none").numpy()
    logits_array, labels_array = logits.numpy(), labels.numpy()
    accuracy = float((logits_array[trained].argmax(1) == labels_array[trained]).mean())
    assert accuracy >= 0.95, f"the network fitted only {accuracy:.3f} of its random labels; it did not memorise"
    return MemorisationCase(
        losses=losses,
        confidences=prediction_confidence(logits_array, labels_array),
        entropies=prediction_entropy(logits_array),
        logits=logits_array,
        labels=labels_array,
        sets=sets,
        train_accuracy=accuracy,
    )


def attack_on(case: MemorisationCase, name: str, members: str, non_members: str):
    sets = case.sets
    if name == "loss_threshold":
        return loss_threshold_attack(case.losses[sets[members]], case.losses[sets[non_members]])
    if name == "loss_logistic":
        return loss_logistic_attack(case.losses[sets[members]], case.losses[sets[non_members]])
    feature = case.confidences if name == "confidence_svc" else case.entropies
    return svc_attack(
        feature[sets["retain"]],
        feature[sets["shadow_non_members"]],
        feature[sets[members]],
        feature[sets[non_members]],
        feature=name[: -len("_svc")],
    )


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_is_chance_on_unseen_samples(memorised, name):
    result = attack_on(memorised, name, "unseen_a", "unseen_b")
    margin = CHANCE_MARGIN_IN_STD * null_auc_std(SET_SIZE, SET_SIZE)
    assert abs(result.auc - 0.5) <= margin, (
        f"{name} separates two sets of unseen samples with AUC {result.auc:.3f}; chance is 0.5 +- {margin:.3f}"
    )
    assert abs(result.balanced_accuracy - 0.5) <= 0.15, (
        f"{name} reached balanced accuracy {result.balanced_accuracy:.3f} between two unseen sets (chance: 0.5)"
    )


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_detects_memorised_samples(memorised, name):
    result = attack_on(memorised, name, "forget", "unseen_b")
    threshold = 0.5 + CHANCE_MARGIN_IN_STD * null_auc_std(SET_SIZE, SET_SIZE)
    assert result.auc > threshold, (
        f"{name} gave AUC {result.auc:.3f} on memorised against unseen samples; expected above {threshold:.3f}"
    )
    assert result.balanced_accuracy > 0.55, f"{name} balanced accuracy {result.balanced_accuracy:.3f} is near chance"


@pytest.mark.parametrize("name", ["confidence_svc", "entropy_svc"])
def test_mia_efficacy_low_for_memorised_forget_set(memorised, name):
    unseen = attack_on(memorised, name, "unseen_a", "unseen_b").mia_efficacy
    memorised_efficacy = attack_on(memorised, name, "forget", "unseen_b").mia_efficacy
    assert memorised_efficacy <= unseen - 0.2, (
        f"{name}: a memorised forget set should look like members (MIA-efficacy {memorised_efficacy:.3f}) far more "
        f"than an unseen one ({unseen:.3f})"
    )


def evaluation_of(case: MemorisationCase, indices: np.ndarray, flags: np.ndarray) -> ClassifierEvaluation:
    return ClassifierEvaluation(
        logits=case.logits[indices], labels=case.labels[indices], flags=flags, losses=case.losses[indices]
    )


def test_run_attacks_uses_flags_of_both_splits(memorised):
    sets = memorised.sets
    train = evaluation_of(
        memorised,
        np.concatenate([sets["retain"], sets["forget"]]),
        np.concatenate([np.zeros(SET_SIZE, int), np.ones(SET_SIZE, int)]),
    )
    heldout = evaluation_of(
        memorised,
        np.concatenate([sets["shadow_non_members"], sets["unseen_b"]]),
        np.concatenate([np.zeros(SET_SIZE, int), np.ones(SET_SIZE, int)]),
    )
    results = run_attacks(train, heldout)
    assert list(results) == list(ATTACKS), f"every attack should run, got {list(results)}"
    for name, result in results.items():
        assert result.members == SET_SIZE, f"{name} should use the {SET_SIZE} flagged training samples as members"
        assert result.non_members == SET_SIZE, f"{name} should use the {SET_SIZE} flagged held-out samples"
        assert result.details["non_member_set"] == "held-out forget samples", f"{name}: {result.details}"
    direct = attack_on(memorised, "loss_threshold", "forget", "unseen_b")
    assert results["loss_threshold"].auc == pytest.approx(direct.auc), "run_attacks should pick the same sets"
    summary = attack_summary(results)
    assert summary["mia_efficacy"] == results["confidence_svc"].mia_efficacy, "mia_efficacy is the confidence SVC's"
    assert summary["mia_entropy_efficacy"] == results["entropy_svc"].mia_efficacy, "entropy efficacy is missing"


def test_run_attacks_matches_classes_without_heldout_forget(memorised):
    sets = memorised.sets
    train = evaluation_of(
        memorised,
        np.concatenate([sets["retain"], sets["forget"]]),
        np.concatenate([np.zeros(SET_SIZE, int), np.ones(SET_SIZE, int)]),
    )
    heldout = evaluation_of(memorised, sets["unseen_b"], np.zeros(SET_SIZE, int))
    result = run_attacks(train, heldout, attacks=["loss_threshold"])["loss_threshold"]
    assert result.details["non_member_set"] == "held-out samples matched to the forget set's classes", result.details
    assert 0 < result.non_members <= SET_SIZE, f"class matching drew {result.non_members} non-members"


def test_class_matched_indices_keep_proportions():
    members = np.array([0] * 30 + [1] * 10)
    candidates = np.array([0] * 50 + [1] * 5 + [2] * 20)
    chosen = class_matched_indices(members, candidates, seed=0)
    counts = np.bincount(candidates[chosen], minlength=3)
    assert counts.tolist() == [15, 5, 0], f"expected 3:1 proportions, limited by the 5 candidates of class 1: {counts}"
    assert len(set(chosen.tolist())) == len(chosen), "candidates must be drawn without replacement"


def test_attack_skipped_for_tiny_sets():
    result = loss_threshold_attack(np.array([0.1]), np.array([0.5, 0.7]))
    assert result.skipped is not None and "at least 2" in result.skipped, f"expected a skip reason, got {result}"
    assert result.auc is None, "a skipped attack must not report an AUC"


def test_run_attacks_rejects_unknown_attack(memorised):
    evaluation = evaluation_of(memorised, memorised.sets["forget"], np.ones(SET_SIZE, int))
    with pytest.raises(ValueError, match=r"Unknown membership inference attacks \['shadow_models'\]"):
        run_attacks(evaluation, evaluation, attacks=["shadow_models"])


def test_non_finite_losses_raise():
    with pytest.raises(ValueError, match="non-finite"):
        loss_threshold_attack(np.array([0.1, np.nan, 0.3]), np.array([0.5, 0.7]))
