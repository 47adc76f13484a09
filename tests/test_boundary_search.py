"""Tests of the inner boundary search, the frozen copy, label layouts and soft boundary targets."""

from __future__ import annotations

import copy
import re

import pytest
import torch
import torch.nn.functional as F

from monai_unlearn.inner import BoundarySearch, frozen_copy, soft_boundary_targets, to_class_indices

pytestmark = pytest.mark.usefixtures("single_torch_thread")

BOX = (0.0, 1.0)
SUBSET = 64


@pytest.fixture(scope="module")
def forget_batch(trained_classifier):
    """The first 64 BreastMNIST training images and labels, as a forget batch."""
    return trained_classifier.images[:SUBSET], trained_classifier.labels[:SUBSET]


@pytest.fixture(scope="module")
def segmenter() -> torch.nn.Module:
    """A small random 2-D segmentation network with 3 output channels, frozen."""
    torch.manual_seed(0)
    network = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, kernel_size=3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 3, kernel_size=3, padding=1),
    )
    return frozen_copy(network)


@pytest.fixture(scope="module")
def segmentation_batch():
    """Two random 16x16 images, random ground truth (B, 1, H, W) over 3 classes, and a left-half forget region."""
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(2, 1, 16, 16, generator=generator)
    labels = torch.randint(0, 3, (2, 1, 16, 16), generator=generator)
    region = torch.zeros(2, 16, 16, dtype=torch.bool)
    region[:, :, :8] = True
    return images, labels, region


def predictions(network: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return network(images).argmax(dim=1)


# --- the frozen network -----------------------------------------------------------------------------------------


def test_frozen_copy_is_eval_without_gradients(trained_classifier):
    frozen = frozen_copy(trained_classifier.network)

    assert not frozen.training, "frozen_copy must return a network in eval mode"
    assert not any(p.requires_grad for p in frozen.parameters()), "frozen_copy left parameters that require grad"
    assert any(p.requires_grad for p in trained_classifier.network.parameters()), (
        "frozen_copy must not change the original network's requires_grad flags"
    )


def test_search_rejects_trainable_network(forget_batch):
    images, labels = forget_batch
    network = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 2))

    with pytest.raises(ValueError, match="frozen_copy"):
        BoundarySearch(epsilon=0.1)(network, images, labels)


def test_search_rejects_eval_network_with_gradients(forget_batch):
    images, labels = forget_batch
    network = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 2)).eval()

    with pytest.raises(ValueError, match="no parameter gradients"):
        BoundarySearch(epsilon=0.1)(network, images, labels)


def test_search_rejects_train_mode_network(forget_batch):
    images, labels = forget_batch
    network = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 2)).requires_grad_(False)

    with pytest.raises(ValueError, match="eval mode"):
        BoundarySearch(epsilon=0.1)(network, images, labels)


def test_search_rejects_train_mode_submodule(trained_classifier, forget_batch):
    # A BatchNorm layer in train mode would update its running statistics during the search and mix the samples.
    images, labels = forget_batch
    network = frozen_copy(trained_classifier.network)
    batch_norm = next(module for module in network.modules() if isinstance(module, torch.nn.BatchNorm2d))
    batch_norm.train()

    with pytest.raises(ValueError, match="eval mode"):
        BoundarySearch(epsilon=0.1)(network, images, labels)


def test_search_sets_no_parameter_grad(trained_classifier, forget_batch):
    images, labels = forget_batch
    frozen = frozen_copy(trained_classifier.network)

    BoundarySearch(epsilon=0.05, steps=3, box=BOX, noise_scale=0.1)(frozen, images, labels)

    with_grad = [name for name, p in frozen.named_parameters() if p.grad is not None]
    assert with_grad == [], f"the inner search stored gradients on frozen parameters: {with_grad[:5]}"


def test_search_leaves_frozen_weights_unchanged(trained_classifier, forget_batch):
    images, labels = forget_batch
    frozen = frozen_copy(trained_classifier.network)
    before = copy.deepcopy(frozen.state_dict())

    BoundarySearch(epsilon=0.05, steps=3, box=BOX)(frozen, images, labels)

    changed = [key for key, value in frozen.state_dict().items() if not torch.equal(value, before[key])]
    assert changed == [], f"the inner search changed weights or BatchNorm statistics of the frozen network: {changed}"


def test_search_does_not_modify_images(trained_classifier, forget_batch):
    images, labels = forget_batch
    original = images.clone()

    BoundarySearch(epsilon=0.1, steps=2, box=BOX)(trained_classifier.frozen, images, labels)

    assert torch.equal(images, original), "the inner search wrote into the caller's image tensor"


# --- per-sample steps and FGSM ----------------------------------------------------------------------------------


def test_sample_point_independent_of_batch(trained_classifier, forget_batch):
    # The closeness term makes the balance between gradient and pull depend on the gradient's scale, so a batch-mean
    # loss (gradient divided by the batch size) would change the point of a sample in a batch of 16.
    images, labels = forget_batch
    batch_images, batch_labels = images[:16], labels[:16]
    closeness = 0.05

    def search(weight: float, sample_images, sample_labels) -> torch.Tensor:
        inner = BoundarySearch(epsilon=0.1, steps=5, step_size=0.03, closeness=weight, box=BOX, noise_scale=0.0)
        return inner(trained_classifier.frozen, sample_images, sample_labels).points

    alone = search(closeness, batch_images[3:4], batch_labels[3:4])
    in_batch = search(closeness, batch_images, batch_labels)[3:4]
    rescaled = search(closeness * 16, batch_images[3:4], batch_labels[3:4])

    assert torch.equal(alone, in_batch), (
        f"sample 3 got a different boundary point alone than in a batch of 16 "
        f"(max difference {float((alone - in_batch).abs().max())}); the inner loss must be summed over the batch"
    )
    assert not torch.equal(alone, rescaled), (
        "a 16 times larger closeness weight gave the same point, so this test cannot detect a batch-mean loss"
    )


def test_fgsm_equals_hand_computation(trained_classifier, forget_batch):
    images, labels = forget_batch
    epsilon = 0.05
    clean = images.clone().requires_grad_(True)
    loss = F.cross_entropy(trained_classifier.frozen(clean), labels, reduction="sum")
    (gradient,) = torch.autograd.grad(loss, clean)
    expected = (images + epsilon * gradient.sign()).clamp(*BOX)

    result = BoundarySearch(epsilon=epsilon, steps=1, step_size=epsilon, noise_scale=0.0, closeness=0.0, box=BOX)(
        trained_classifier.frozen, images, labels
    )

    difference = float((result.points - expected).abs().max())
    assert difference < 1e-6, f"K=1, step=epsilon, no noise must be the FGSM point; max difference {difference}"
    assert torch.equal(result.labels, predictions(trained_classifier.frozen, expected)), (
        "the boundary labels of the FGSM search must be argmax f_0(x*)"
    )


def test_fgsm_default_step_size(trained_classifier, forget_batch):
    images, labels = forget_batch

    default = BoundarySearch(epsilon=0.05, steps=1, box=BOX)(trained_classifier.frozen, images, labels)
    explicit = BoundarySearch(epsilon=0.05, steps=1, step_size=0.05, box=BOX)(trained_classifier.frozen, images, labels)

    assert torch.equal(default.points, explicit.points), "with steps=1 the default step size must be epsilon"


def test_more_steps_raise_inner_loss(trained_classifier, forget_batch):
    images, labels = forget_batch
    epsilon = 0.03

    one_step = BoundarySearch(epsilon=epsilon, steps=1, box=BOX)(trained_classifier.frozen, images, labels)
    ten_steps = BoundarySearch(epsilon=epsilon, steps=10, box=BOX)(trained_classifier.frozen, images, labels)

    assert len(one_step.inner_losses) == 2, f"K=1 must record 2 inner losses, got {len(one_step.inner_losses)}"
    assert len(ten_steps.inner_losses) == 11, f"K=10 must record 11 inner losses, got {len(ten_steps.inner_losses)}"
    assert one_step.inner_losses[0] == pytest.approx(ten_steps.inner_losses[0]), (
        "both searches start at the clean images, so their first inner losses must agree"
    )
    assert ten_steps.inner_losses[-1] > one_step.inner_losses[-1], (
        f"10 inner steps reached a mean loss of {ten_steps.inner_losses[-1]:.4f}, not above the "
        f"{one_step.inner_losses[-1]:.4f} of a single step with the same epsilon {epsilon}"
    )


def test_search_flips_trained_model_labels(trained_classifier):
    images, labels = trained_classifier.images, trained_classifier.labels
    correct = predictions(trained_classifier.frozen, images) == labels
    correct_images, correct_labels = images[correct][:128], labels[correct][:128]

    result = BoundarySearch(epsilon=0.1, steps=5, box=BOX)(trained_classifier.frozen, correct_images, correct_labels)

    flipped = float((result.labels != correct_labels).float().mean())
    assert flipped > 0.6, (
        f"epsilon 0.1 with 5 steps flipped only {flipped:.2f} of {len(correct_labels)} correctly classified "
        "BreastMNIST samples; expected a clear majority"
    )
    assert result.flip_rate == pytest.approx(flipped), (
        f"flip_rate {result.flip_rate} does not match the fraction of changed labels {flipped}"
    )


def test_points_stay_in_ball_and_box(trained_classifier, forget_batch):
    images, labels = forget_batch

    result = BoundarySearch(epsilon=0.04, steps=4, box=BOX, noise_scale=0.5, random_start=True)(
        trained_classifier.frozen, images, labels
    )

    distance = float((result.points - images).abs().max())
    assert distance <= 0.04 + 1e-6, f"boundary points are {distance} from the clean images, beyond epsilon 0.04"
    assert float(result.points.min()) >= 0.0, f"boundary points go below the box: {float(result.points.min())}"
    assert float(result.points.max()) <= 1.0, f"boundary points go above the box: {float(result.points.max())}"


# --- early stop -------------------------------------------------------------------------------------------------


def test_early_stop_flip_freezes_flipped_samples(trained_classifier, forget_batch):
    images, labels = forget_batch
    steps, step_size = 6, 0.01

    def search(count: int, early_stop=None):
        inner = BoundarySearch(epsilon=0.05, steps=count, step_size=step_size, box=BOX, early_stop=early_stop)
        return inner(trained_classifier.frozen, images, labels)

    # Trajectory without early stop: trajectory[k] is the iterate after k steps.
    trajectory = [images] + [search(count).points for count in range(1, steps + 1)]
    early = search(steps, early_stop="flip")

    flipped = torch.stack([predictions(trained_classifier.frozen, point) != labels for point in trajectory])
    first_flip = []
    for index in range(len(labels)):
        flip_steps = flipped[:, index].nonzero().flatten().tolist()
        first_flip.append(flip_steps[0] if flip_steps else steps)
    expected = torch.stack([trajectory[k][index] for index, k in enumerate(first_flip)])

    frozen_mid_search = sum(1 <= k < steps for k in first_flip)
    assert frozen_mid_search > 0, "no sample flipped after moving and before the last step; the test proves nothing"
    mismatched = [index for index in range(len(labels)) if not torch.equal(early.points[index], expected[index])]
    assert mismatched == [], (
        f"with early_stop='flip' samples {mismatched[:10]} did not stay at the iterate where their label first flipped"
    )


def test_early_stop_flip_keeps_misclassified_at_clean_image(trained_classifier, forget_batch):
    images, labels = forget_batch
    misclassified = predictions(trained_classifier.frozen, images) != labels
    if not bool(misclassified.any()):
        pytest.skip("the trained classifier gets every sample of the subset right")

    result = BoundarySearch(epsilon=0.1, steps=3, box=BOX, early_stop="flip")(trained_classifier.frozen, images, labels)

    assert torch.equal(result.points[misclassified], images[misclassified]), (
        "samples whose label is already wrong at x must not move under early_stop='flip'"
    )


def test_early_stop_ends_when_all_flipped(trained_classifier, forget_batch):
    images, labels = forget_batch

    result = BoundarySearch(epsilon=0.3, steps=30, step_size=0.05, box=BOX, early_stop="flip")(
        trained_classifier.frozen, images, labels
    )

    assert result.flip_rate == 1.0, f"epsilon 0.3 must flip every sample, flip rate {result.flip_rate}"
    assert result.steps_run < 30, f"the search ran all {result.steps_run} steps although every sample had flipped"
    assert len(result.inner_losses) == result.steps_run + 1, (
        f"{len(result.inner_losses)} inner losses recorded for {result.steps_run} steps; expected steps_run + 1"
    )


# --- soft targets -----------------------------------------------------------------------------------------------


def test_soft_targets_detached():
    logits = torch.randn(4, 5, requires_grad=True)

    targets = soft_boundary_targets(logits, top_k=3, temperature=1.0)

    assert not targets.requires_grad, "soft targets must be detached from the logits"
    assert targets.grad_fn is None, "soft targets must carry no autograd graph"


def test_soft_targets_sum_to_one():
    logits = torch.randn(4, 5, 6, 6, generator=torch.Generator().manual_seed(0))

    targets = soft_boundary_targets(logits, top_k=2, temperature=2.0)

    sums = targets.sum(dim=1)
    assert torch.allclose(sums, torch.ones_like(sums), atol=1e-6), (
        f"soft targets must sum to 1 over the channels; sums range over [{float(sums.min())}, {float(sums.max())}]"
    )


def test_soft_targets_zero_outside_top_k():
    logits = torch.randn(8, 6, generator=torch.Generator().manual_seed(1))

    targets = soft_boundary_targets(logits, top_k=3, temperature=1.0)

    ranks = logits.argsort(dim=1, descending=True).argsort(dim=1)
    outside = targets[ranks >= 3]
    inside = targets[ranks < 3]
    assert bool((outside == 0).all()), f"classes outside the top 3 got mass up to {float(outside.max())}"
    assert bool((inside > 0).all()), "every one of the top 3 classes must get positive mass"


def test_soft_targets_top_k_matches_masked_softmax():
    logits = torch.tensor([[3.0, 1.0, 2.0, -1.0]])

    targets = soft_boundary_targets(logits, top_k=2, temperature=0.5)

    expected = torch.softmax(torch.tensor([[3.0, 2.0]]) / 0.5, dim=1)
    assert torch.allclose(targets[0, [0, 2]], expected[0]), (
        f"soft targets over the top 2 must be softmax(top-2 logits / T), got {targets.tolist()}"
    )


def test_soft_targets_without_top_k_keep_all_classes():
    logits = torch.randn(4, 5, generator=torch.Generator().manual_seed(2))

    targets = soft_boundary_targets(logits, top_k=None, temperature=1.0)

    assert torch.allclose(targets, torch.softmax(logits, dim=1)), "top_k=None must be the plain softmax"


def test_search_soft_targets_from_boundary_logits(trained_classifier, forget_batch):
    images, labels = forget_batch

    result = BoundarySearch(epsilon=0.05, box=BOX, top_k=1, temperature=1.0)(trained_classifier.frozen, images, labels)

    assert not result.soft_targets.requires_grad, "the search returned soft targets attached to a graph"
    assert torch.equal(result.soft_targets.argmax(dim=1), result.labels), (
        "with top_k=1 the soft targets must be one-hot at the hard boundary labels"
    )
    assert torch.allclose(result.soft_targets.sum(dim=1), torch.ones(len(labels))), "soft targets must sum to 1"


# --- segmentation -----------------------------------------------------------------------------------------------


def test_segmentation_keeps_ground_truth_outside_region(segmenter, segmentation_batch):
    images, labels, region = segmentation_batch

    result = BoundarySearch(epsilon=0.5, steps=3, box=BOX)(segmenter, images, labels, region=region)

    ground_truth = labels[:, 0]
    outside = ~region
    assert result.labels.shape == ground_truth.shape, (
        f"segmentation boundary labels have shape {tuple(result.labels.shape)}, expected {tuple(ground_truth.shape)}"
    )
    assert torch.equal(result.labels[outside], ground_truth[outside]), (
        "boundary labels outside the forget region must equal the ground truth"
    )
    raw_outside = result.logits.argmax(dim=1)[outside]
    assert bool((raw_outside != ground_truth[outside]).any()), (
        "the network already agrees with the ground truth outside the region; the test would prove nothing"
    )


def test_segmentation_flip_fraction_over_region(segmenter, segmentation_batch):
    images, labels, region = segmentation_batch

    result = BoundarySearch(epsilon=0.5, steps=3, box=BOX)(segmenter, images, labels, region=region)

    changed = (result.labels != labels[:, 0]) & region
    expected = changed.flatten(1).sum(dim=1).float() / region.flatten(1).sum(dim=1).float()
    assert torch.allclose(result.flip_fraction, expected), (
        f"flip_fraction {result.flip_fraction.tolist()} must be the changed fraction of region voxels "
        f"{expected.tolist()}"
    )
    assert result.flip_rate == pytest.approx(float(expected.mean())), (
        f"flip_rate {result.flip_rate} must be the batch mean of flip_fraction {float(expected.mean())}"
    )


def test_segmentation_region_with_channel(segmenter, segmentation_batch):
    images, labels, region = segmentation_batch

    without_channel = BoundarySearch(epsilon=0.5, steps=2, box=BOX)(segmenter, images, labels, region=region)
    with_channel = BoundarySearch(epsilon=0.5, steps=2, box=BOX)(segmenter, images, labels, region=region[:, None])

    assert torch.equal(without_channel.points, with_channel.points), (
        "a region of shape (B, 1, H, W) must act like the same region of shape (B, H, W)"
    )


def test_segmentation_without_region_uses_whole_image(segmenter, segmentation_batch):
    images, labels, _ = segmentation_batch

    result = BoundarySearch(epsilon=0.5, steps=2, box=BOX)(segmenter, images, labels)

    expected = (result.labels != labels[:, 0]).flatten(1).float().mean(dim=1)
    assert torch.allclose(result.flip_fraction, expected), (
        f"without a region, flip_fraction {result.flip_fraction.tolist()} must cover every voxel: {expected.tolist()}"
    )


def test_segmentation_region_shape_mismatch(segmenter, segmentation_batch):
    images, labels, _ = segmentation_batch
    region = torch.ones(2, 8, 8, dtype=torch.bool)

    with pytest.raises(ValueError, match=re.escape("Forget region of shape (2, 8, 8)")):
        BoundarySearch(epsilon=0.5, box=BOX)(segmenter, images, labels, region=region)


# --- label layouts ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "labels",
    [
        torch.tensor([0, 2, 1]),
        torch.tensor([[0], [2], [1]]),
        F.one_hot(torch.tensor([0, 2, 1]), 3),
    ],
    ids=["indices", "indices-with-channel", "one-hot"],
)
def test_class_indices_from_classification_layouts(labels):
    logits = torch.zeros(3, 3)

    indices = to_class_indices(labels, logits)

    assert indices.tolist() == [0, 2, 1], f"labels {labels.tolist()} became indices {indices.tolist()}"
    assert indices.dtype == torch.int64, f"class indices must be int64, got {indices.dtype}"


@pytest.mark.parametrize("layout", ["indices", "indices-with-channel", "one-hot"])
def test_class_indices_from_segmentation_layouts(layout):
    ground_truth = torch.randint(0, 3, (2, 4, 4), generator=torch.Generator().manual_seed(0))
    labels = {
        "indices": ground_truth,
        "indices-with-channel": ground_truth[:, None],
        "one-hot": F.one_hot(ground_truth, 3).permute(0, 3, 1, 2),
    }[layout]

    indices = to_class_indices(labels, torch.zeros(2, 3, 4, 4))

    assert torch.equal(indices, ground_truth), f"{layout} segmentation labels did not convert to the class map"


def test_class_indices_reject_wrong_shape():
    message = "Labels of shape (2, 2, 4, 4) do not match network output of shape (2, 3, 4, 4)"
    with pytest.raises(ValueError, match=re.escape(message)):
        to_class_indices(torch.zeros(2, 2, 4, 4), torch.zeros(2, 3, 4, 4))


def test_class_indices_reject_wrong_batch_size():
    with pytest.raises(ValueError, match=re.escape("Labels of shape (4,) do not match network output of shape (3, 2)")):
        to_class_indices(torch.zeros(4, dtype=torch.long), torch.zeros(3, 2))


def test_class_indices_reject_out_of_range():
    with pytest.raises(ValueError, match=re.escape("in [0, 2], got values in [0, 3]")):
        to_class_indices(torch.tensor([0, 3, 1]), torch.zeros(3, 3))


def test_class_indices_reject_negative():
    with pytest.raises(ValueError, match=re.escape("in [0, 1], got values in [-1, 1]")):
        to_class_indices(torch.tensor([-1, 1]), torch.zeros(2, 2))


def test_search_rejects_out_of_range_labels(trained_classifier, forget_batch):
    images, _ = forget_batch
    labels = torch.full((len(images),), 2)

    with pytest.raises(ValueError, match=re.escape("in [0, 1], got values in [2, 2]")):
        BoundarySearch(epsilon=0.1, box=BOX)(trained_classifier.frozen, images, labels)


# --- construction -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"epsilon": 0.0}, "Invalid epsilon: 0.0"),
        ({"epsilon": 0.1, "steps": 0}, "Invalid number of inner steps: 0"),
        ({"epsilon": 0.1, "early_stop": "loss"}, "Invalid early_stop 'loss'"),
        ({"epsilon": 0.1, "early_stop": 1.5}, "Invalid early_stop 1.5"),
        ({"epsilon": 0.1, "top_k": 0}, "Invalid top_k: 0"),
        ({"epsilon": 0.1, "temperature": 0.0}, "Invalid temperature: 0.0"),
        ({"epsilon": 0.1, "noise": "student"}, "Invalid noise law 'student'"),
        ({"epsilon": 0.1, "step_size": -0.1}, "Invalid lr (step size): -0.1"),
    ],
)
def test_search_rejects_invalid_arguments(arguments, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        BoundarySearch(**arguments)
