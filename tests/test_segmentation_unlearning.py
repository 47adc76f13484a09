"""Tests of segmentation unlearning on real MSD hippocampus volumes at a small size.

The volumes are centre-cropped as in the hippocampus bundle and then halved in size. A small 3D UNet is trained on
them for a few seconds, so that the forget regions, boundary labels, losses and evaluation run on a real segmenter.
Budget of this file: about 25 s on 2 CPU cores with one torch thread.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.data import DataLoader, Dataset
from monai.inferers import SliceInferer
from monai.losses import DiceCELoss
from monai.networks.nets import UNet
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    Resized,
    ResizeWithPadOrCropd,
    ScaleIntensityRangePercentilesd,
)

from conftest import data_dir
from monai_unlearn.data import build_hippocampus_datalist, hippocampus_case_fields
from monai_unlearn.engines import UnlearningTrainer
from monai_unlearn.inner import BoundarySearch, frozen_copy
from monai_unlearn.losses import forget_loss
from monai_unlearn.metrics import case_loss_mia, evaluate_segmenter
from monai_unlearn.methods import BoundaryUnlearning
from monai_unlearn.transforms import ForgetLabelRegiond, PercentileCompare, TagForgetd, label_region, split_datalist

pytestmark = pytest.mark.usefixtures("single_torch_thread")

CLASS_NAMES = ["background", "anterior", "posterior"]
RETIRED = 2
CASES = 14
HALF_SIZE = (16, 28, 20)


@pytest.fixture(scope="module")
def hippocampus_datalist(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("hippocampus")
    path = build_hippocampus_datalist(folder, data_dir=data_dir(), max_cases=20, deletion_request_size=3)
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def volumes(hippocampus_datalist: dict) -> list[dict]:
    """The first training cases, cropped as in the bundle and halved: image (1, 16, 28, 20) in [0, 1], label."""
    load = Compose(
        [
            LoadImaged(keys=["image", "label"], image_only=True),
            EnsureChannelFirstd(keys=["image", "label"]),
            ScaleIntensityRangePercentilesd(keys="image", lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True),
            ResizeWithPadOrCropd(keys=["image", "label"], spatial_size=(32, 56, 40)),
            Resized(keys=["image", "label"], spatial_size=HALF_SIZE, mode=("area", "nearest")),
            EnsureTyped(keys=["image", "label"], dtype=torch.float32, track_meta=False),
        ]
    )
    entries = hippocampus_datalist["training"][:CASES]
    return [load(dict(entry)) for entry in entries]


@pytest.fixture(scope="module")
def segmenter(volumes: list[dict]) -> torch.nn.Module:
    """A small 3D UNet trained for a few seconds on the half-size volumes (seeded)."""
    torch.manual_seed(0)
    network = UNet(3, 1, 3, channels=(8, 16, 32), strides=(2, 2), num_res_units=1)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-2)
    loss_function = DiceCELoss(to_onehot_y=True, softmax=True)
    images = torch.stack([v["image"] for v in volumes])
    labels = torch.stack([v["label"] for v in volumes])
    generator = torch.Generator().manual_seed(0)
    for _ in range(40):
        batch = torch.randperm(len(images), generator=generator)[:4]
        loss = loss_function(network(images[batch]), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    network.eval()
    return network


def dice_by_label(network: torch.nn.Module, volumes: list[dict]) -> np.ndarray:
    loader = DataLoader(Dataset([dict(v) for v in volumes]), batch_size=8)
    return evaluate_segmenter(network, loader, "cpu", class_names=CLASS_NAMES).dice.mean(axis=0)


# --- datalist builder ----------------------------------------------------------------------------------------------


def test_case_fields_volume_from_voxels_and_spacing(tmp_path):
    import nibabel as nib

    values = np.zeros((10, 10, 10), dtype=np.uint8)
    values[:2, :5] = 1  # 100 voxels
    values[5:, :2, :3] = 2  # 30 voxels
    nib.save(nib.Nifti1Image(values, np.diag([2.0, 1.0, 1.5, 1.0])), tmp_path / "label.nii.gz")

    fields = hippocampus_case_fields(tmp_path / "label.nii.gz")

    assert fields["anterior_volume_ml"] == pytest.approx(100 * 3.0 / 1000), "anterior volume must use voxel volume"
    assert fields["posterior_volume_ml"] == pytest.approx(30 * 3.0 / 1000), "posterior volume must use voxel volume"
    assert fields["hippocampus_volume_ml"] == pytest.approx(130 * 3.0 / 1000), "total must add both labels"
    assert fields["spacing_mm"] == [2.0, 1.0, 1.5], f"spacing read from the header, got {fields['spacing_mm']}"


def test_case_fields_reject_unknown_label(tmp_path):
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.full((4, 4, 4), 3, dtype=np.uint8), np.eye(4)), tmp_path / "label.nii.gz")
    with pytest.raises(ValueError, match=r"values \[3\]"):
        hippocampus_case_fields(tmp_path / "label.nii.gz")


def test_datalist_splits_and_fields(hippocampus_datalist):
    counts = hippocampus_datalist["counts"]
    assert counts == {"training": 14, "validation": 2, "test": 4}, f"unexpected split sizes {counts}"
    ids = [e["case_id"] for split in ("training", "validation", "test") for e in hippocampus_datalist[split]]
    assert len(set(ids)) == len(ids), "a case must not appear in two splits"
    entry = hippocampus_datalist["training"][0]
    for field in ("hippocampus_volume_ml", "anterior_volume_ml", "posterior_volume_ml", "image_dtype", "shape"):
        assert field in entry, f"datalist entries must carry {field!r}"
    total = entry["anterior_volume_ml"] + entry["posterior_volume_ml"]
    assert entry["hippocampus_volume_ml"] == pytest.approx(total, abs=2e-4), "total volume must equal the parts"


def test_deletion_request_lists_training_cases(hippocampus_datalist, tmp_path_factory):
    folder = tmp_path_factory.mktemp("request")
    build_hippocampus_datalist(folder, data_dir=data_dir(), max_cases=20, deletion_request_size=3)
    lines = [line for line in (folder / "deletion_request.txt").read_text().splitlines() if not line.startswith("#")]
    training = {e["case_id"] for e in hippocampus_datalist["training"]}
    assert len(lines) == 3, f"expected 3 requested cases, got {lines}"
    assert set(lines) <= training, "the deletion request must list training cases only"


def test_datalist_rejects_oversized_request(tmp_path):
    with pytest.raises(ValueError, match="deletion_request_size"):
        build_hippocampus_datalist(tmp_path, data_dir=data_dir(), max_cases=10, deletion_request_size=7)


# --- forget regions and rules --------------------------------------------------------------------------------------


def test_label_region_marks_retired_voxels(volumes):
    label = volumes[0]["label"]
    region = label_region(label, [RETIRED])
    assert region.dtype == torch.bool, f"the region must be boolean, got {region.dtype}"
    assert torch.equal(region, label == RETIRED), "the region must be exactly the voxels of the retired label"


def test_label_region_from_one_hot(volumes):
    label = volumes[0]["label"]
    one_hot = F.one_hot(label[0].long(), 3).movedim(-1, 0)
    assert torch.equal(label_region(one_hot, [RETIRED]), label == RETIRED), "one-hot labels must give the same region"


def test_forget_label_region_writes_region_and_flag(volumes):
    sample = ForgetLabelRegiond(keys="label", labels=[RETIRED])(dict(volumes[0]))
    assert sample["forget"] == 1, "a case with retired voxels is a forget sample"
    assert int(sample["forget_region"].sum()) == int((volumes[0]["label"] == RETIRED).sum()), "region voxel count"


def test_forget_label_region_flag_zero_without_label(volumes):
    sample = dict(volumes[0])
    sample["label"] = torch.where(sample["label"] == RETIRED, 0.0, sample["label"])
    tagged = ForgetLabelRegiond(keys="label", labels=[RETIRED])(sample)
    assert tagged["forget"] == 0, "a case without the retired label is not a forget sample"
    assert not tagged["forget_region"].any(), "its region must be empty"


def test_forget_label_region_keeps_numpy(volumes):
    sample = {"label": volumes[0]["label"].numpy()}
    region = ForgetLabelRegiond(keys="label", labels=[RETIRED])(sample)["forget_region"]
    assert isinstance(region, np.ndarray), f"numpy labels should give a numpy region, got {type(region).__name__}"


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(keys=["label", "other"], labels=[2]), "exactly one label key"),
        (dict(keys="label", labels=[]), "at least one retired label"),
        (dict(keys="label", labels=[-1]), "non-negative integers"),
    ],
)
def test_forget_label_region_rejects_bad_arguments(arguments, message):
    with pytest.raises(ValueError, match=message):
        ForgetLabelRegiond(**arguments)


def test_percentile_rule_selects_upper_tail(hippocampus_datalist):
    training = hippocampus_datalist["training"]
    rule = PercentileCompare("hippocampus_volume_ml", ">", 75, training)
    expected = float(np.percentile([e["hippocampus_volume_ml"] for e in training], 75))

    forget, retain = split_datalist(training, rule)

    assert rule.threshold == pytest.approx(expected), "the threshold must be the datalist's 75th percentile"
    assert all(e["hippocampus_volume_ml"] > expected for e in forget), "every forget case lies above the threshold"
    assert len(forget) == 4, f"14 cases above the 75th percentile should be 4 (linear interpolation), got {len(forget)}"
    assert "percentile 75" in rule.describe(), f"the description should name the percentile: {rule.describe()}"


def test_percentile_rule_rejects_missing_field():
    with pytest.raises(ValueError, match="no field 'hippocampus_volume_ml'"):
        PercentileCompare("hippocampus_volume_ml", ">", 90, [{"case_id": "a"}])


def test_percentile_rule_rejects_bad_percentile():
    with pytest.raises(ValueError, match="Invalid percentile"):
        PercentileCompare("x", ">", 101, [{"x": 1.0}])


# --- inner search and losses for label forgetting ------------------------------------------------------------------


def forget_batch(volumes: list[dict], count: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    images = torch.stack([v["image"] for v in volumes[:count]])
    labels = torch.stack([v["label"] for v in volumes[:count]])
    return images, labels, labels[:, 0] == RETIRED


def test_boundary_labels_never_retired(segmenter, volumes):
    images, labels, region = forget_batch(volumes)
    result = BoundarySearch(epsilon=0.05, exclude_classes=[RETIRED])(frozen_copy(segmenter), images, labels, region)
    assert not (result.labels == RETIRED).any(), "no boundary label may take the retired label"


def test_boundary_labels_keep_ground_truth_outside_region(segmenter, volumes):
    images, labels, region = forget_batch(volumes)
    result = BoundarySearch(epsilon=0.05, exclude_classes=[RETIRED])(frozen_copy(segmenter), images, labels, region)
    assert torch.equal(result.labels[~region], labels[:, 0].long()[~region]), "outside the region: ground truth"


def test_boundary_labels_inside_region_are_allowed_classes(segmenter, volumes):
    images, labels, region = forget_batch(volumes)
    result = BoundarySearch(epsilon=0.05, exclude_classes=[RETIRED])(frozen_copy(segmenter), images, labels, region)
    inside = result.labels[region]
    values = set(inside.unique().tolist())
    assert values <= {0, 1}, f"region voxels must become background or anterior, got {values}"
    assert result.flip_rate == pytest.approx(1.0), "every region voxel changes label when its label is retired"


def test_only_background_allowed_relabels_region_to_background(segmenter, volumes):
    images, labels, region = forget_batch(volumes)
    search = BoundarySearch(epsilon=0.05, exclude_classes=[1, RETIRED])
    result = search(frozen_copy(segmenter), images, labels, region)
    assert (result.labels[region] == 0).all(), "with background the only allowed class, the region becomes background"
    assert result.steps_run == 0, "with one allowed class the search has nothing to decide and must not run"
    assert torch.equal(result.labels[~region], labels[:, 0].long()[~region]), "ground truth stays outside the region"


def test_soft_targets_one_hot_outside_region(segmenter, volumes):
    images, labels, region = forget_batch(volumes)
    result = BoundarySearch(epsilon=0.05, exclude_classes=[RETIRED])(frozen_copy(segmenter), images, labels, region)
    expected = F.one_hot(labels[:, 0].long(), 3).movedim(-1, 1).float()
    outside = ~region.unsqueeze(1).expand_as(expected)
    assert torch.equal(result.soft_targets[outside], expected[outside]), "soft targets outside must be one-hot truth"
    assert float(result.soft_targets[:, RETIRED].max()) == 0.0, "no soft target mass on the retired label"


def test_search_rejects_excluding_every_class(segmenter, volumes):
    images, labels, region = forget_batch(volumes, count=1)
    with pytest.raises(ValueError, match="at least one class must stay allowed"):
        BoundarySearch(epsilon=0.05, exclude_classes=[0, 1, 2])(frozen_copy(segmenter), images, labels, region)


def test_search_rejects_negative_excluded_class():
    with pytest.raises(ValueError, match="Invalid exclude_classes"):
        BoundarySearch(epsilon=0.05, exclude_classes=[-1])


def test_region_weight_changes_forget_loss(segmenter, volumes):
    images, labels, region = forget_batch(volumes)
    logits = segmenter(images)
    targets = labels[:, 0].long()
    plain = forget_loss(logits, boundary_labels=targets)
    unit = forget_loss(logits, boundary_labels=targets, voxel_weights=torch.ones_like(region, dtype=torch.float32))
    weights = torch.where(region, 10.0, 1.0)
    per_voxel = F.cross_entropy(logits, targets, reduction="none")
    expected = (per_voxel * weights).sum() / weights.sum()
    assert torch.allclose(unit, plain), "unit weights must give the plain mean"
    assert torch.allclose(forget_loss(logits, boundary_labels=targets, voxel_weights=weights), expected), (
        "weighted loss must be sum(w * l) / sum(w)"
    )


def test_method_rejects_bad_region_weight():
    with pytest.raises(ValueError, match="Invalid region_weight"):
        BoundaryUnlearning(preset="psg", epsilon=0.05, region_weight=0)


# --- the trainer on label forgetting -------------------------------------------------------------------------------


def test_label_forgetting_removes_retired_label(segmenter, volumes):
    network = copy.deepcopy(segmenter)
    tag = ForgetLabelRegiond(keys="label", labels=[RETIRED])
    loader = DataLoader(Dataset([dict(v) for v in volumes], transform=tag), batch_size=4, shuffle=True)
    before = dice_by_label(network, volumes)
    trainer = UnlearningTrainer(
        device="cpu",
        max_epochs=4,
        train_data_loader=loader,
        network=network,
        optimizer=torch.optim.Adam(network.parameters(), lr=2e-3),
        method="psg",
        method_kwargs={"epsilon": 0.05, "box": (0.0, 1.0), "exclude_classes": [1, RETIRED], "region_weight": 5.0},
        region_key="forget_region",
    )

    trainer.run()

    after = dice_by_label(network, volumes)
    images = torch.stack([v["image"] for v in volumes])
    with torch.no_grad():
        predicted = network.eval()(images).argmax(dim=1)
    assert before[1] > 0.5, f"the trained segmenter should know the posterior label first, Dice {before[1]:.3f}"
    assert int((predicted == RETIRED).sum()) == 0, "after label forgetting no voxel may be predicted as retired"
    assert after[0] >= before[0] - 0.05, f"anterior Dice fell from {before[0]:.3f} to {after[0]:.3f}"
    assert trainer.history[-1]["retain_samples"] == 0, "with region maps every case is a forget sample"


def test_all_forget_pass_without_region_still_fails(segmenter, volumes):
    network = copy.deepcopy(segmenter)
    tagged = [TagForgetd("image_dtype != 'none'")({**v, "image_dtype": "x"}) for v in volumes[:4]]
    loader = DataLoader(Dataset(tagged), batch_size=4)
    trainer = UnlearningTrainer(
        device="cpu",
        max_epochs=1,
        train_data_loader=loader,
        network=network,
        optimizer=torch.optim.Adam(network.parameters(), lr=1e-4),
        method="psg",
        method_kwargs={"epsilon": 0.05},
    )
    with pytest.raises(ValueError, match="forget set is the whole training set"):
        trainer.run()


# --- evaluation and the case-level attack --------------------------------------------------------------------------


def test_evaluation_dice_matches_hand_computation(segmenter, volumes):
    images = torch.stack([v["image"] for v in volumes[:3]])
    labels = torch.stack([v["label"] for v in volumes[:3]])[:, 0].long()
    with torch.no_grad():
        predicted = segmenter(images).argmax(dim=1)
    expected = []
    for case in range(3):
        per_label = []
        for label in (1, 2):
            p, t = predicted[case] == label, labels[case] == label
            per_label.append(float(2 * (p & t).sum() / (p.sum() + t.sum())))
        expected.append(per_label)

    evaluation = dice_by_label_cases(segmenter, volumes[:3])

    assert np.allclose(evaluation.dice, np.array(expected), atol=1e-5), f"{evaluation.dice} != {expected}"


def dice_by_label_cases(network, volumes):
    loader = DataLoader(Dataset([dict(v) for v in volumes]), batch_size=2)
    return evaluate_segmenter(network, loader, "cpu", class_names=CLASS_NAMES)


def test_evaluation_case_losses_are_voxel_means(segmenter, volumes):
    evaluation = dice_by_label_cases(segmenter, volumes[:2])
    image, label = volumes[1]["image"][None], volumes[1]["label"][None, 0].long()
    with torch.no_grad():
        expected = float(F.cross_entropy(segmenter(image), label))
    assert evaluation.losses[1] == pytest.approx(expected, rel=1e-5), "case loss must be the mean voxel cross-entropy"


def test_evaluation_summary_splits_by_flag(segmenter, volumes):
    tagged = [{**v, "forget": int(index < 2)} for index, v in enumerate(volumes[:5])]
    loader = DataLoader(Dataset(tagged), batch_size=2)
    summary = evaluate_segmenter(segmenter, loader, "cpu", class_names=CLASS_NAMES).summary
    assert (summary["cases"], summary["forget_cases"], summary["retain_cases"]) == (5, 2, 3), f"counts: {summary}"
    assert set(summary["forget_dice"]) == {"anterior", "posterior"}, "per-label Dice is keyed by foreground name"
    assert summary["predicted_voxels"]["background"] > 0, "voxel counts are reported per class"


def test_evaluation_with_slice_inferer(volumes):
    torch.manual_seed(0)
    network = UNet(2, 1, 3, channels=(4, 8), strides=(2,), num_res_units=0).eval()
    loader = DataLoader(Dataset([dict(v) for v in volumes[:2]]), batch_size=2)
    inferer = SliceInferer(roi_size=HALF_SIZE[:2], spatial_dim=2, sw_batch_size=32, progress=False)
    evaluation = evaluate_segmenter(network, loader, "cpu", class_names=CLASS_NAMES, inferer=inferer)
    shape = evaluation.dice.shape
    assert shape == (2, 2), f"a 2D network on volumes should give Dice per case and label, got shape {shape}"


def test_evaluation_rejects_wrong_class_names(segmenter, volumes):
    with pytest.raises(ValueError, match="2 class names for a network with 3 outputs"):
        dice_loader = DataLoader(Dataset([dict(volumes[0])]), batch_size=1)
        evaluate_segmenter(segmenter, dice_loader, "cpu", class_names=["a", "b"])


def test_case_mia_separates_lower_member_losses():
    result = case_loss_mia([0.1, 0.2, 0.3], [0.4, 0.5])
    assert result["auc"] == pytest.approx(1.0), "members with lower losses than every non-member give AUC 1"
    assert result["balanced_accuracy"] == pytest.approx(1.0), "a threshold separates them perfectly"


def test_case_mia_ties_count_half():
    assert case_loss_mia([0.5, 0.5], [0.5])["auc"] == pytest.approx(0.5), "identical losses carry no signal"


def test_case_mia_rejects_empty_group():
    with pytest.raises(ValueError, match="needs member and non-member cases"):
        case_loss_mia([], [0.1])
