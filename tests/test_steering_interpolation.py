"""Tests of weight interpolation and of the choice of the mixing weight on a real validation split.

The real case: A is the small modality classifier, B is A revised by the unlearning trainer to forget breast
ultrasound (class 1). Budget: about 15 s on one thread.
"""

from __future__ import annotations

import copy

import pytest
import torch
from monai.data import DataLoader, Dataset

from conftest import load_modality_split
from monai_unlearn.engines import UnlearningTrainer
from monai_unlearn.metrics import EvaluationSuite
from monai_unlearn.steering import choose_alpha, interpolate, interpolated_network
from monai_unlearn.transforms import TagForgetd

FORGET_RULE = "label in {1}"
ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


@pytest.fixture(autouse=True)
def _one_thread(single_torch_thread):
    yield


def tagged_loader(entries: list[dict], shuffle: bool = False) -> DataLoader:
    dataset = Dataset([dict(entry) for entry in entries], transform=TagForgetd(FORGET_RULE))
    generator = torch.Generator().manual_seed(0) if shuffle else None
    return DataLoader(dataset, batch_size=32, shuffle=shuffle, generator=generator)


@pytest.fixture(scope="module")
def runs(modality_classifier) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A (the trained classifier) and B (A after two passes of psg_retain forgetting class 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        revised = copy.deepcopy(modality_classifier.network)
        UnlearningTrainer(
            device="cpu",
            max_epochs=2,
            train_data_loader=tagged_loader(modality_classifier.train, shuffle=True),
            network=revised,
            optimizer=torch.optim.Adam(revised.parameters(), lr=1e-3),
            method="psg_retain",
            method_kwargs={"epsilon": 0.1, "box": (0.0, 1.0)},
            batchnorm="eval",
        ).run()
    finally:
        torch.set_num_threads(threads)
    return modality_classifier.network.eval(), revised.eval()


def split_accuracies(network: torch.nn.Module, entries: list[dict]) -> tuple[float, float]:
    """Return the accuracy on class-1 entries and on the other entries, computed without the evaluation suite."""
    images = torch.stack([entry["image"] for entry in entries])
    labels = torch.tensor([entry["label"] for entry in entries])
    with torch.no_grad():
        correct = network.eval()(images).argmax(dim=1) == labels
    forget = labels == 1
    return float(correct[forget].float().mean()), float(correct[~forget].float().mean())


def test_interpolation_endpoints_equal_parents(runs):
    network_a, network_b = runs
    for alpha, parent in ((0.0, network_a), (1.0, network_b)):
        mixed = interpolate(network_a, network_b, alpha)
        for key, value in parent.state_dict().items():
            assert torch.equal(mixed[key], value), f"interpolate(alpha={alpha}) differs from its parent at {key!r}"


def test_interpolation_midpoint_mixes_weights(runs):
    network_a, network_b = runs
    mixed = interpolate(network_a, network_b, 0.25)
    key = "class_layers.out.weight"
    expected = 0.75 * network_a.state_dict()[key] + 0.25 * network_b.state_dict()[key]
    assert torch.allclose(mixed[key], expected, atol=1e-6), "interpolate(0.25) is not 0.75 * A + 0.25 * B"


def test_interpolation_rejects_alpha_outside_unit_interval(runs):
    with pytest.raises(ValueError, match=r"Invalid alpha 1\.5; it must be in \[0, 1\]"):
        interpolate(*runs, 1.5)


def test_interpolation_rejects_other_architectures(runs, modality_classifier):
    from conftest import make_modality_network

    other = make_modality_network()
    other.class_layers.out = torch.nn.Linear(other.class_layers.out.in_features, 2)
    with pytest.raises(ValueError, match="Mismatched architectures"):
        interpolate(runs[0], other, 0.5)


def test_interpolated_network_loads_mixture(runs):
    network_a, network_b = runs
    mixed = interpolated_network(copy.deepcopy(network_a), network_a, network_b, 0.5)
    expected = interpolate(network_a, network_b, 0.5)
    assert all(torch.equal(value, expected[key]) for key, value in mixed.state_dict().items()), "weights differ"


@pytest.fixture(scope="module")
def validation(modality_small) -> list[dict]:
    return load_modality_split(modality_small, "validation")


def test_choose_alpha_picks_best_retain_at_forget_level(runs, validation):
    network_a, network_b = runs
    forget_a, _ = split_accuracies(network_a, validation)
    forget_b, _ = split_accuracies(network_b, validation)
    assert forget_b < forget_a - 0.5, f"B should forget class 1, got accuracy {forget_a:.3f} (A) and {forget_b:.3f} (B)"
    level = 0.2
    suite = EvaluationSuite({"validation": tagged_loader(validation)}, train_split="validation", attacks=())

    choice = choose_alpha(network_a, network_b, copy.deepcopy(network_a), suite, forget_level=level, alphas=ALPHAS)

    independent = {}
    for alpha in ALPHAS:
        probe = interpolated_network(copy.deepcopy(network_a), network_a, network_b, alpha)
        independent[alpha] = split_accuracies(probe, validation)
    reaching = [alpha for alpha in ALPHAS if independent[alpha][0] <= level]
    expected = max(reaching, key=lambda alpha: (independent[alpha][1], -alpha))
    assert choice.alpha == expected, f"chose alpha {choice.alpha}, expected {expected} from {independent}"
    assert choice.forget == pytest.approx(independent[expected][0]), "the reported forget accuracy is wrong"
    assert choice.retain == pytest.approx(independent[expected][1]), "the reported retain accuracy is wrong"
    assert [row["alpha"] for row in choice.candidates] == list(ALPHAS), "every alpha should be evaluated once"


def test_choose_alpha_unreachable_level_raises(runs, validation):
    suite = EvaluationSuite({"validation": tagged_loader(validation)}, train_split="validation", attacks=())
    with pytest.raises(ValueError, match=r"no alpha in .* reaches the forget level forget_train_accuracy <= -0\.1"):
        choose_alpha(runs[0], runs[1], copy.deepcopy(runs[0]), suite, forget_level=-0.1, alphas=(0.0, 1.0))
