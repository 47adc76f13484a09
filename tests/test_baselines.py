"""Tests of the baseline unlearning methods on small real cases, through the unlearning trainer and the bundle CLI.

Classification: the 3-class modality DenseNet of ``conftest.py`` (forget the breast ultrasound class), one pass.
Segmentation: a small 2-D UNet on real hippocampus MRI slices, forgetting the posterior hippocampus label of some
cases (a forget region inside forget images), one pass.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ignite.engine import Events
from ignite.metrics import Accuracy
from monai.bundle import ConfigParser
from monai.data import DataLoader, Dataset
from monai.handlers import from_engine
from monai.networks.nets import UNet
from monai.transforms import Activationsd, AsDiscreted, Compose

from conftest import MODALITY_BUNDLE, data_dir
from monai_unlearn.baselines import (
    BASELINES,
    SSD,
    BoundaryExpanding,
    L1Sparse,
    SalUn,
    SCRUB,
    dampen,
    find_output_layer,
    resize_output_channels,
    saliency_mask,
)
from monai_unlearn.baselines.common import random_other_labels
from monai_unlearn.engines import UnlearningTrainer
from monai_unlearn.methods import available_methods, create_method
from monai_unlearn.utils import sha256_file
from test_bundle_cli import bundle_cli
from monai_unlearn.transforms import TagForgetd, split_datalist
from test_trainer import FORGET_CLASS, flag_loader

BASELINE_OVERLAYS = MODALITY_BUNDLE / "configs" / "baselines"

#: Settings for the one-pass smoke runs: the defaults, except SSD's alpha. With the breast class as about a third of
#: the small training set, alpha = 10 cannot select any weight (the forget share must be below 1/alpha).
SMOKE_SETTINGS: dict[str, dict] = {name: {} for name in BASELINES}
SMOKE_SETTINGS["ssd"] = {"alpha": 1.5}

#: The modality bundle's training postprocessing: it needs a "pred" of 3 channels for every output.
POSTPROCESSING = Compose(
    [Activationsd(keys="pred", softmax=True), AsDiscreted(keys=["pred", "label"], argmax=[True, False], to_onehot=3)]
)


@pytest.fixture(autouse=True)
def _one_thread(single_torch_thread):
    yield


def make_trainer(network: torch.nn.Module, loader, method: str, method_kwargs: dict, lr: float = 1e-3, **kwargs):
    return UnlearningTrainer(
        device="cpu",
        max_epochs=kwargs.pop("max_epochs", 1),
        train_data_loader=loader,
        network=network,
        optimizer=torch.optim.Adam(network.parameters(), lr=lr),
        method=method,
        method_kwargs=method_kwargs,
        batchnorm=kwargs.pop("batchnorm", "eval"),
        **kwargs,
    )


def changed_parameters(before: dict[str, torch.Tensor], network: torch.nn.Module) -> list[str]:
    return [name for name, p in network.named_parameters() if not torch.equal(p.detach(), before[name])]


def parameters_of(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in network.named_parameters()}


def assert_finite(network: torch.nn.Module, method: str) -> None:
    for name, value in network.state_dict().items():
        if value.is_floating_point():
            assert torch.isfinite(value).all(), f"{method} left non-finite values in {name}"


# ------------------------------------------------------------------------------------------------ classification
@pytest.mark.parametrize("method", sorted(BASELINES))
def test_baseline_changes_classifier(modality_classifier, method):
    network = copy.deepcopy(modality_classifier.network)
    before = parameters_of(network)
    trainer = make_trainer(network, flag_loader(modality_classifier.train, batch_size=64), method, SMOKE_SETTINGS[method])

    trainer.run()

    assert_finite(network, method)
    changed = changed_parameters(before, network)
    assert changed, f"{method} left every weight of the classifier unchanged"
    shapes = {name: tuple(p.shape) for name, p in network.named_parameters()}
    assert shapes == {name: tuple(v.shape) for name, v in before.items()}, f"{method} changed parameter shapes"
    with torch.no_grad():
        logits = network.eval()(torch.stack([e["image"] for e in modality_classifier.test[:4]]))
    assert logits.shape == (4, 3), f"{method} changed the output shape to {tuple(logits.shape)}"


def test_baselines_are_registered():
    for name in BASELINES:
        assert name in available_methods(), f"baseline {name} is not selectable by name"


def test_boundary_shrink_is_preset_not_duplicate():
    assert "boundary_shrink" in available_methods(), "the boundary_shrink preset should be registered"
    assert "boundary_shrink_baseline" not in available_methods(), "Boundary Shrink must not be registered twice"


@pytest.mark.parametrize(
    "method, kwargs, message",
    [
        ("neggrad_plus", {"beta": 1.5}, r"neggrad_plus: invalid beta 1.5; it must be <= 1.0"),
        ("random_labels", {"retain_weight": -1}, r"random_labels: invalid retain_weight -1.0; it must be >= 0.0"),
        ("scrub", {"temperature": 0}, r"scrub: invalid temperature 0.0; it must be > 0.0"),
        ("scrub", {"max_passes": 1.5}, r"scrub: invalid max_passes 1.5"),
        ("scrub", {"alpha": 0, "gamma": 0}, "alpha and gamma are both 0"),
        ("salun", {"keep_fraction": 0}, r"salun: invalid keep_fraction 0.0; it must be > 0.0"),
        ("salun", {"keep_fraction": 1.2}, r"salun: invalid keep_fraction 1.2; it must be <= 1.0"),
        ("l1_sparse", {"l1_weight": float("nan")}, r"l1_sparse: invalid l1_weight nan; it must be a finite number"),
        ("l1_sparse", {"schedule": "cosine"}, r"l1_sparse: invalid schedule 'cosine'"),
        ("ssd", {"alpha": -1}, r"ssd: invalid alpha -1.0; it must be > 0.0"),
        ("ssd", {"importance": "hessian"}, r"ssd: invalid importance 'hessian'"),
        ("ssd", {"chunk_size": 0}, r"ssd: invalid chunk_size 0"),
        ("boundary_expanding", {"layer_name": 3}, r"boundary_expanding: layer_name must be a layer name"),
        ("finetune", {"lr": 0.1}, r"unexpected keyword argument 'lr'"),
    ],
)
def test_invalid_settings_raise(method, kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        create_method(method, **kwargs)


def test_overlays_select_registered_methods():
    overlays = sorted(BASELINE_OVERLAYS.glob("*.json"))
    names = {path.stem for path in overlays}
    assert names == set(BASELINES) | {"boundary_shrink"}, f"overlays present: {sorted(names)}"
    for path in overlays:
        config = json.loads(path.read_text())
        assert config["unlearn#method"] == path.stem, f"{path.name} selects {config['unlearn#method']!r}"
        # Resolve the overlay as the bundle CLI does, merged after train.json and unlearn.json, so that references
        # such as "@unlearn#epsilon" take the values of unlearn.json.
        parser = ConfigParser()
        parser.read_config([str(MODALITY_BUNDLE / "configs" / name) for name in ("train.json", "unlearn.json")] + [str(path)])
        method = create_method(parser.get_parsed_content("unlearn#method"), **parser.get_parsed_content("unlearn#method_kwargs"))
        assert method is not None, f"{path.name} settings should build the method"


@pytest.mark.parametrize("method", ["finetune", "scrub", "salun", "ssd"])
def test_baseline_runs_with_paired_loaders(modality_classifier, method):
    forget, retain = split_datalist(modality_classifier.train, f"label in {{{FORGET_CLASS}}}")
    network = copy.deepcopy(modality_classifier.network)
    before = parameters_of(network)
    trainer = make_trainer(
        network,
        DataLoader(Dataset(forget), batch_size=32),
        method,
        SMOKE_SETTINGS[method],
        max_epochs=2,
        retain_loader=DataLoader(Dataset(retain), batch_size=32),
        postprocessing=POSTPROCESSING,
        key_train_metric={"train_accuracy": Accuracy(output_transform=from_engine(["pred", "label"]))},
    )

    trainer.run()

    assert changed_parameters(before, network), f"{method} left every weight unchanged with paired loaders"
    if method != "ssd":
        assert "train_accuracy" in trainer.state.metrics, f"{method} outputs should feed the bundle's key metric"


def test_retain_only_batches_feed_postprocessing(modality_classifier):
    # Sorted by label, the first batches hold chest X-rays only: Boundary Expanding has nothing to learn from them,
    # and their predictions (without the shadow class) must still pass the bundle's postprocessing.
    entries = sorted(modality_classifier.train, key=lambda e: e["label"])
    loader = DataLoader(Dataset([dict(e) for e in entries], transform=TagForgetd("label in {1}")), batch_size=16)
    network = copy.deepcopy(modality_classifier.network)
    trainer = make_trainer(
        network,
        loader,
        "boundary_expanding",
        {},
        postprocessing=POSTPROCESSING,
        key_train_metric={"train_accuracy": Accuracy(output_transform=from_engine(["pred", "label"]))},
    )
    trainer.run()
    assert trainer.history[-1]["forget_samples"] > 0, "the pass should have seen forget samples"
    assert 0.0 <= trainer.state.metrics["train_accuracy"] <= 1.0, "the key metric should be computed on every batch"


# ------------------------------------------------------------------------------------------------ method details
def test_random_other_labels_never_keep_label():
    labels = torch.arange(3).repeat(200)
    relabelled = random_other_labels(labels, 3, torch.Generator().manual_seed(0))
    assert not bool((relabelled == labels).any()), "a random other label equals the true label"
    counts = torch.bincount(relabelled[labels == 0], minlength=3)
    assert counts[1] > 60, f"class 1 should be drawn about half of the time, got counts {counts.tolist()}"
    assert counts[2] > 60, f"class 2 should be drawn about half of the time, got counts {counts.tolist()}"


def test_random_other_labels_respect_mask():
    labels = torch.zeros(2, 4, 4, dtype=torch.long)
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[:, :2] = True
    relabelled = random_other_labels(labels, 3, torch.Generator().manual_seed(0), mask)
    assert bool((relabelled[mask] != 0).all()), "positions in the mask must get another class"
    assert bool((relabelled[~mask] == 0).all()), "positions outside the mask must keep their label"


def test_scrub_pass_schedule():
    method = SCRUB(max_passes=2)
    schedule = [method.is_max_pass(p) for p in range(1, 7)]
    assert schedule == [True, False, True, False, False, False], f"unexpected max/min schedule {schedule}"


def test_scrub_alternates_max_and_min_passes(modality_classifier):
    network = copy.deepcopy(modality_classifier.network)
    trainer = make_trainer(network, flag_loader(modality_classifier.train), "scrub", {"max_passes": 1}, max_epochs=2)
    trainer.run()
    first, second = trainer.history
    assert first["max_step"] == 1.0, f"pass 1 should take only max steps, got {first}"
    assert "forget_divergence" in first, "a max pass should report the forget divergence"
    assert second["max_step"] == 0.0, f"pass 2 should take only min steps, got {second}"
    assert "retain_loss" in second, "a min pass should report the retain loss"


def test_l1_weight_decays_linearly():
    method = L1Sparse(l1_weight=1e-3)
    weights = [method.weight_at(p, 4) for p in range(1, 5)]
    assert weights == pytest.approx([1e-3, 7.5e-4, 5e-4, 2.5e-4]), f"unexpected l1 schedule {weights}"
    assert L1Sparse(l1_weight=1e-3, schedule="constant").weight_at(3, 4) == 1e-3, "constant schedule changed"


def test_saliency_mask_keeps_fraction():
    gradients = {"a": torch.tensor([0.1, -5.0, 0.2]), "b": torch.tensor([[3.0, 0.0], [-0.5, 4.0]])}
    masks = saliency_mask(gradients, 3 / 7)
    assert masks["a"].tolist() == [False, True, False], f"mask of a: {masks['a'].tolist()}"
    assert masks["b"].tolist() == [[True, False], [False, True]], f"mask of b: {masks['b'].tolist()}"


def test_salun_moves_only_salient_weights(modality_classifier):
    network = copy.deepcopy(modality_classifier.network)
    before = parameters_of(network)
    method = SalUn(keep_fraction=0.3)
    # Weight decay would move every weight; SalUn must still keep the non-salient ones at their original values.
    trainer = UnlearningTrainer(
        device="cpu",
        max_epochs=1,
        train_data_loader=flag_loader(modality_classifier.train),
        network=network,
        optimizer=torch.optim.AdamW(network.parameters(), lr=1e-3, weight_decay=0.1),
        method=method,
        batchnorm="eval",
    )
    trainer.run()
    moved = salient_moved = 0
    for name, parameter in network.named_parameters():
        mask = method.masks[name]
        difference = parameter.detach() != before[name]
        assert not bool(difference[~mask].any()), f"SalUn changed non-salient weights of {name}"
        moved += int(difference.sum())
        salient_moved += int(difference[mask].sum())
    kept = sum(int(m.sum()) for m in method.masks.values())
    total = sum(m.numel() for m in method.masks.values())
    assert kept == math.ceil(0.3 * total), f"the mask keeps {kept} of {total} weights, expected 30 %"
    assert salient_moved > 0.5 * kept, f"only {salient_moved} of {kept} salient weights moved"


def test_ssd_takes_no_optimizer_step(modality_classifier):
    network = copy.deepcopy(modality_classifier.network)
    before = parameters_of(network)
    trainer = make_trainer(network, flag_loader(modality_classifier.train), "ssd", {"alpha": 1.5}, max_epochs=3)
    completed = []
    trainer.add_event_handler(Events.COMPLETED, lambda engine: completed.append(engine.state.iteration))
    trainer.run()
    assert completed == [0], f"the run should complete after setup with no outer step, got iterations {completed}"
    assert not trainer.optimizer.state, "SSD must not take an optimizer step"
    assert trainer.method.statistics["dampened_weights"] > 0, f"no weight was dampened: {trainer.method.statistics}"
    for name, parameter in network.named_parameters():
        assert bool((parameter.detach().abs() <= before[name].abs()).all()), f"SSD enlarged weights of {name}"


def test_ssd_warns_when_alpha_cannot_select(modality_classifier, caplog):
    network = copy.deepcopy(modality_classifier.network)
    before = parameters_of(network)
    trainer = make_trainer(network, flag_loader(modality_classifier.train), "ssd", {"alpha": 10.0})
    with caplog.at_level(logging.WARNING, logger="monai_unlearn.baselines.ssd"):
        trainer.run()
    assert "SSD cannot dampen any weight" in caplog.text, "SSD should warn that alpha is too large for the forget set"
    assert not changed_parameters(before, network), "no weight should change when none can be selected"


def test_dampen_follows_selection_rule():
    parameters = {"w": torch.nn.Parameter(torch.ones(4))}
    importance_all = {"w": torch.tensor([1.0, 1.0, 1.0, 0.0])}
    importance_forget = {"w": torch.tensor([0.5, 3.0, 20.0, 0.0])}
    dampened, total = dampen(parameters, importance_all, importance_forget, alpha=2.0, dampening=1.0)
    assert (dampened, total) == (2, 4), f"expected 2 of 4 weights dampened, got {dampened} of {total}"
    assert parameters["w"].tolist() == pytest.approx([1.0, 1 / 3, 1 / 20, 1.0]), f"got {parameters['w'].tolist()}"


def test_boundary_expanding_restores_output_layer(modality_classifier):
    network = copy.deepcopy(modality_classifier.network)
    layer = network.class_layers.out
    weight, bias = layer.weight, layer.bias
    trainer = make_trainer(network, flag_loader(modality_classifier.train), "boundary_expanding", {})
    seen = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda engine: seen.append(layer.out_features))
    trainer.run()
    assert set(seen) == {4}, f"the output layer should carry the shadow class during the run, saw {set(seen)}"
    assert layer.out_features == 3, f"the shadow class should be removed, out_features is {layer.out_features}"
    assert tuple(layer.weight.shape) == (3, layer.in_features), f"weight shape {tuple(layer.weight.shape)}"
    assert layer.weight is weight, "the layer's weight must keep its identity"
    assert layer.bias is bias, "the layer's bias must keep its identity"
    assert weight not in trainer.optimizer.state, "optimizer state of the resized layer should be dropped"
    assert trainer.history[-1]["shadow_rate"] >= 0.0, "the shadow rate should be reported"


class OutputSizeRecorder:
    """A bundle-style handler that records the output layer's size when the run completes."""

    def __init__(self, layer: torch.nn.Linear) -> None:
        self.layer = layer
        self.sizes: list[int] = []

    def attach(self, engine) -> None:
        engine.add_event_handler(Events.COMPLETED, lambda _: self.sizes.append(self.layer.out_features))


def test_bundle_handlers_run_after_finalize(modality_classifier):
    network = copy.deepcopy(modality_classifier.network)
    recorder = OutputSizeRecorder(network.class_layers.out)
    trainer = make_trainer(
        network, flag_loader(modality_classifier.train), "boundary_expanding", {}, train_handlers=[recorder]
    )
    trainer.run()
    assert recorder.sizes == [3], f"a COMPLETED handler should see the network without the shadow class: {recorder.sizes}"


def test_boundary_expanding_without_output_layer_raises(modality_classifier):
    class ProjectionHead(torch.nn.Module):
        """A head that projects features with a bare matrix product, so no linear layer produces the logits."""

        def __init__(self) -> None:
            super().__init__()
            self.features = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 16))
            self.projection = torch.nn.Parameter(torch.randn(16, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.features(x) @ self.projection

    trainer = make_trainer(ProjectionHead(), flag_loader(modality_classifier.train), "boundary_expanding", {})
    with pytest.raises(ValueError, match="boundary_expanding could not find the network's output layer"):
        trainer.run()


def test_find_output_layer_checks_layer_name(modality_classifier):
    network = copy.deepcopy(modality_classifier.network).eval()
    example = modality_classifier.train[0]["image"].unsqueeze(0)
    assert find_output_layer(network, example).name == "class_layers.out", "the DenseNet's last linear layer"
    with pytest.raises(ValueError, match="has no layer named 'head'"):
        find_output_layer(network, example, layer_name="head")
    with pytest.raises(ValueError, match="does not have the network's output shape"):
        find_output_layer(network, example, layer_name="features.conv0")


def test_resize_transposed_convolution_channels():
    layer = torch.nn.ConvTranspose2d(4, 3, kernel_size=3)
    weight = layer.weight.detach().clone()
    resize_output_channels(layer, 4, generator=torch.Generator().manual_seed(0))
    assert tuple(layer.weight.shape) == (4, 4, 3, 3), f"unexpected weight shape {tuple(layer.weight.shape)}"
    assert torch.equal(layer.weight[:, :3], weight), "existing channels must be kept"
    resize_output_channels(layer, 3)
    assert torch.equal(layer.weight, weight), "shrinking back must restore the original weights"


# ------------------------------------------------------------------------------------------------ segmentation
SEGMENTATION_CASES = 8
SEGMENTATION_SIZE = 32
FORGET_LABEL = 2


@pytest.fixture(scope="module")
def hippocampus_slices() -> list[dict]:
    """Middle axial slices of 8 real hippocampus MRI cases at 32x32; half of them forget the posterior label."""
    images_dir = data_dir() / "msd_hippocampus" / "images"
    paths = sorted(images_dir.glob("*.nii.gz"))[:SEGMENTATION_CASES]
    if len(paths) < SEGMENTATION_CASES:
        pytest.skip(f"fewer than {SEGMENTATION_CASES} hippocampus volumes in {images_dir}")
    entries = []
    for index, path in enumerate(paths):
        image = np.asarray(nib.load(path).dataobj, dtype=np.float32)
        label = np.asarray(nib.load(str(path).replace("/images/", "/labels/")).dataobj, dtype=np.float32)
        middle = image.shape[2] // 2
        image_slice = torch.from_numpy(image[:, :, middle])[None, None]
        label_slice = torch.from_numpy(label[:, :, middle])[None, None]
        image_slice = F.interpolate(image_slice, size=(SEGMENTATION_SIZE,) * 2, mode="bilinear", align_corners=False)
        label_slice = F.interpolate(label_slice, size=(SEGMENTATION_SIZE,) * 2, mode="nearest")
        image_slice = (image_slice - image_slice.min()) / (image_slice.max() - image_slice.min() + 1e-8)
        label_map = label_slice[0].round().long()
        forget = int(index % 2 == 0)
        entries.append(
            {
                "image": image_slice[0],
                "label": label_map,
                "forget": forget,
                "forget_region": (label_map[0] == FORGET_LABEL) if forget else torch.zeros_like(label_map[0], dtype=torch.bool),
            }
        )
    return entries


def make_segmenter() -> torch.nn.Module:
    torch.manual_seed(0)
    return UNet(spatial_dims=2, in_channels=1, out_channels=3, channels=(4, 8), strides=(2,), num_res_units=0)


@pytest.mark.parametrize("method", sorted(BASELINES))
def test_baseline_changes_segmenter(hippocampus_slices, method):
    network = make_segmenter()
    before = parameters_of(network)
    loader = DataLoader(Dataset(hippocampus_slices), batch_size=4, shuffle=False)
    settings = {"alpha": 1.5} if method == "ssd" else SMOKE_SETTINGS[method]
    trainer = make_trainer(network, loader, method, settings, region_key="forget_region")

    trainer.run()

    assert_finite(network, method)
    assert changed_parameters(before, network), f"{method} left every weight of the segmenter unchanged"
    with torch.no_grad():
        output = network.eval()(torch.stack([e["image"] for e in hippocampus_slices[:2]]))
    assert output.shape == (2, 3, SEGMENTATION_SIZE, SEGMENTATION_SIZE), f"{method} changed the output shape"


# ------------------------------------------------------------------------------------------------ bundle CLI
@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory: pytest.TempPathFactory, modality_small: dict) -> Path:
    """A copy of the bundle whose model was trained in-process with the bundle's own train.json on the small data."""
    bundle = tmp_path_factory.mktemp("baseline_bundle") / "modality_classifier"
    shutil.copytree(MODALITY_BUNDLE, bundle, ignore=shutil.ignore_patterns("data", "models", "eval", "__pycache__"))
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "train.json"))
    parser["bundle_root"] = str(bundle)
    parser["dataset_dir"] = str(modality_small["folder"])
    parser["num_epochs"] = 8
    parser["val_interval"] = 4
    torch.manual_seed(0)
    parser.get_parsed_content("train#trainer").run()
    assert (bundle / "models" / "model.pt").is_file(), "train.json should have written models/model.pt"
    shutil.copy2(bundle / "models" / "model.pt", bundle / "models" / "trained.pt")
    return bundle


@pytest.fixture()
def revision_bundle(small_bundle: Path) -> Path:
    """The small bundle with its trained checkpoint restored and earlier revision outputs removed."""
    models = small_bundle / "models"
    for path in models.glob("model.original-*.pt"):
        path.unlink()
    shutil.copy2(models / "trained.pt", models / "model.pt")
    shutil.rmtree(small_bundle / "eval", ignore_errors=True)
    return small_bundle


def revise_with_overlay(bundle: Path, method: str, dataset_dir: Path) -> dict:
    """Run the bundle CLI with the baseline's overlay and return the unlearning report."""
    overlay = f"configs/baselines/{method}.json"
    bundle_cli(bundle, ["configs/train.json", "configs/unlearn.json", overlay], "--dataset_dir", str(dataset_dir))
    return json.loads((bundle / "eval" / "unlearning" / "unlearning_report.json").read_text())


def test_salun_overlay_forgets_through_cli(revision_bundle: Path, modality_small: dict):
    checkpoint = revision_bundle / "models" / "model.pt"
    original_sha = sha256_file(checkpoint)

    report = revise_with_overlay(revision_bundle, "salun", modality_small["folder"])

    assert report["method"]["name"] == "salun", f"the overlay's method should run: {report['method']}"
    assert sha256_file(checkpoint) != original_sha, "models/model.pt should hold the revised weights"
    test = report["splits"]["test"]
    assert test["after"]["forget_accuracy"] <= 0.2, f"SalUn should forget the breast class: {test}"
    assert test["after"]["retain_accuracy"] >= test["before"]["retain_accuracy"] - 0.1, f"retain accuracy fell: {test}"


def test_boundary_expanding_overlay_through_cli(revision_bundle: Path, modality_small: dict):
    checkpoint = revision_bundle / "models" / "model.pt"
    original_sha = sha256_file(checkpoint)

    report = revise_with_overlay(revision_bundle, "boundary_expanding", modality_small["folder"])

    assert report["method"]["name"] == "boundary_expanding", f"the overlay's method should run: {report['method']}"
    assert report["passes"][-1]["shadow_rate"] > 0, f"no forget sample reached the shadow class: {report['passes']}"
    original = torch.load(revision_bundle / "models" / f"model.original-{original_sha[:12]}.pt", weights_only=True)
    revised = torch.load(checkpoint, weights_only=True)
    shapes = {k: tuple(v.shape) for k, v in revised.items()}
    assert shapes == {k: tuple(v.shape) for k, v in original.items()}, "the shadow class leaked into the checkpoint"
    assert any(not torch.equal(revised[k], original[k]) for k in original), "the revised weights equal the original"
