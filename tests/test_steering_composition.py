"""Tests of model composition: the head split of MONAI's network families, refusals and the retain fine-tune.

Budget: about 15 s on one thread (the EfficientNet and SEResNet forward passes take most of it).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import DataLoader, Dataset
from monai.networks.nets import BasicUNet, DenseNet, EfficientNetBN, ResNet, SegResNet, SENet, UNet

from monai_unlearn.steering import compose, find_head
from monai_unlearn.transforms import TagForgetd

FAMILIES: dict[str, tuple[Callable[[], torch.nn.Module], str]] = {
    "densenet": (
        lambda: DenseNet(spatial_dims=2, in_channels=1, out_channels=3, init_features=8, growth_rate=8,
                         block_config=(2, 2)),
        "class_layers.out",
    ),
    "resnet": (
        lambda: ResNet("basic", [1, 1, 1, 1], [4, 8, 8, 8], spatial_dims=2, n_input_channels=1, num_classes=3),
        "fc",
    ),
    "seresnet": (
        lambda: SENet(2, 1, "se_resnet_bottleneck", [1, 1, 1, 1], groups=1, reduction=4, inplanes=8, num_classes=3,
                      dropout_prob=None, downsample_kernel_size=1, input_3x3=False),
        "last_linear",
    ),
    "efficientnet": (
        lambda: EfficientNetBN("efficientnet-b0", spatial_dims=2, in_channels=1, num_classes=3, pretrained=False),
        "_fc",
    ),
    "segresnet": (
        lambda: SegResNet(2, init_filters=8, in_channels=1, out_channels=3, blocks_down=(1, 1), blocks_up=(1,)),
        "conv_final.2.conv",
    ),
    "basicunet": (lambda: BasicUNet(2, 1, 3, features=(4, 4, 8, 8, 16, 4)), "final_conv"),
}


def make_unet(out_channels: int = 3) -> torch.nn.Module:
    return UNet(2, 1, out_channels, channels=(4, 8, 16), strides=(2, 2), num_res_units=1)


def seeded(factory: Callable[[], torch.nn.Module], seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return factory().eval()


@pytest.fixture(autouse=True)
def _one_thread(single_torch_thread):
    yield


def assert_composed_from(composed: torch.nn.Module, extractor, head, head_name: str) -> None:
    state = composed.state_dict()
    extractor_state, head_state = extractor.state_dict(), head.state_dict()
    head_keys = [key for key in state if key.startswith(head_name + ".")]
    assert head_keys, f"the head {head_name!r} has no tensors in the composed state dict"
    for key, value in state.items():
        source, name = (head_state, "head_from") if key in head_keys else (extractor_state, "extractor_from")
        assert torch.equal(value, source[key]), f"{key!r} of the composed network does not come from {name}"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_compose_auto_split_per_family(family: str):
    factory, head_name = FAMILIES[family]
    extractor, head = seeded(factory, 0), seeded(factory, 1)
    found = find_head(extractor)
    assert found.name == head_name, f"{family}: the automatic split found {found.name!r}, expected {head_name!r}"
    composed = compose(extractor_from=extractor, head_from=head)
    assert_composed_from(composed, extractor, head, head_name)


def test_unet_auto_split_raises():
    with pytest.raises(ValueError, match=r"could not split UNet automatically.*kernel size \(3, 3\).*'model\.2'"):
        find_head(make_unet())


def test_unet_composes_with_named_split():
    extractor, head = seeded(make_unet, 0), seeded(make_unet, 1)
    composed = compose(extractor_from=extractor, head_from=head, split="model.2")
    assert_composed_from(composed, extractor, head, "model.2")


def test_compose_from_checkpoint_paths(tmp_path):
    factory, head_name = FAMILIES["densenet"]
    extractor, head = seeded(factory, 0), seeded(factory, 1)
    torch.save(extractor.state_dict(), tmp_path / "extractor.pt")
    torch.save({"model": head.state_dict()}, tmp_path / "head.pt")
    composed = compose(str(tmp_path / "extractor.pt"), tmp_path / "head.pt", network=factory())
    assert_composed_from(composed, extractor, head, head_name)


def test_compose_leaves_sources_unchanged():
    factory, _ = FAMILIES["densenet"]
    extractor, head = seeded(factory, 0), seeded(factory, 1)
    before = {key: value.clone() for key, value in head.state_dict().items()}
    compose(extractor, head)
    assert all(torch.equal(before[key], value) for key, value in head.state_dict().items()), "compose changed head_from"


def test_mismatched_families_raise():
    with pytest.raises(ValueError, match="Mismatched architectures: the extractor comes from a DenseNet and the head"):
        compose(seeded(FAMILIES["densenet"][0], 0), seeded(FAMILIES["resnet"][0], 0))


def test_mismatched_widths_raise():
    narrow = DenseNet(spatial_dims=2, in_channels=1, out_channels=3, init_features=8, growth_rate=8,
                      block_config=(2, 2))
    wide = DenseNet(spatial_dims=2, in_channels=1, out_channels=3, init_features=8, growth_rate=12, block_config=(2, 2))
    with pytest.raises(ValueError, match="Mismatched architectures: .* differ in shape"):
        compose(narrow, wide)


def test_mismatched_depths_raise():
    shallow = DenseNet(spatial_dims=2, in_channels=1, out_channels=3, init_features=8, growth_rate=8,
                       block_config=(2, 2))
    deep = DenseNet(spatial_dims=2, in_channels=1, out_channels=3, init_features=8, growth_rate=8, block_config=(2, 3))
    with pytest.raises(ValueError, match="Mismatched architectures: only head_from has"):
        compose(shallow, deep)


def test_mismatched_heads_raise():
    with pytest.raises(ValueError, match=r"Mismatched heads: the head 'fc'.*\[3, 8\] vs \[2, 8\]"):
        compose(
            ResNet("basic", [1, 1, 1, 1], [4, 8, 8, 8], spatial_dims=2, n_input_channels=1, num_classes=3),
            ResNet("basic", [1, 1, 1, 1], [4, 8, 8, 8], spatial_dims=2, n_input_channels=1, num_classes=2),
        )


def test_mismatched_segmentation_heads_raise():
    with pytest.raises(ValueError, match=r"Mismatched heads: the head 'model\.2'"):
        compose(make_unet(3), make_unet(2), split="model.2")


def test_state_dicts_without_network_raise():
    factory, _ = FAMILIES["densenet"]
    with pytest.raises(ValueError, match="needs a network definition"):
        compose(factory().state_dict(), factory().state_dict())


def test_unknown_split_raises():
    with pytest.raises(ValueError, match=r"invalid split 'classifier'.*\['features', 'class_layers'\]"):
        compose(seeded(FAMILIES["densenet"][0], 0), seeded(FAMILIES["densenet"][0], 1), split="classifier")


def test_invalid_finetune_mode_raises():
    factory, _ = FAMILIES["densenet"]
    with pytest.raises(ValueError, match="invalid finetune 'partial'"):
        compose(factory(), factory(), finetune="partial")


def test_finetune_without_loader_raises():
    factory, _ = FAMILIES["densenet"]
    with pytest.raises(ValueError, match="finetune='head' needs finetune_loader"):
        compose(factory(), factory(), finetune="head")


def _retain_accuracy(network: torch.nn.Module, entries: list[dict]) -> float:
    retain = [entry for entry in entries if entry["label"] != 1]
    images = torch.stack([entry["image"] for entry in retain])
    labels = torch.tensor([entry["label"] for entry in retain])
    with torch.no_grad():
        return float((network.eval()(images).argmax(dim=1) == labels).float().mean())


def test_head_finetune_trains_head_only(modality_classifier):
    trained = modality_classifier.network
    scrambled = copy.deepcopy(trained)
    torch.manual_seed(3)
    torch.nn.init.normal_(scrambled.class_layers.out.weight, std=1.0)
    loader = DataLoader(
        Dataset([dict(entry) for entry in modality_classifier.train], transform=TagForgetd("label in {1}")),
        batch_size=32,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    untuned = compose(trained, scrambled)
    tuned = compose(trained, scrambled, finetune="head", finetune_loader=loader, finetune_epochs=3,
                    finetune_learning_rate=1e-2)

    for key, value in tuned.state_dict().items():
        if not key.startswith("class_layers.out."):
            assert torch.equal(value, trained.state_dict()[key]), f"the head fine-tune changed extractor tensor {key!r}"
    assert not torch.equal(tuned.class_layers.out.weight, scrambled.class_layers.out.weight), "the head did not train"
    before = _retain_accuracy(untuned, modality_classifier.train)
    after = _retain_accuracy(tuned, modality_classifier.train)
    assert after > before + 0.1, f"the head fine-tune should raise retain accuracy, got {before:.3f} -> {after:.3f}"
    assert after >= 0.9, f"the head fine-tune reached only {after:.3f} retain accuracy on the training split"


def test_compose_from_bundle_config(tmp_path):
    factory, head_name = FAMILIES["densenet"]
    extractor, head = seeded(factory, 0), seeded(factory, 1)
    torch.save(extractor.state_dict(), tmp_path / "run_a.pt")
    torch.save(head.state_dict(), tmp_path / "run_b.pt")
    config = {
        "models": str(tmp_path),
        "network_def": {
            "_target_": "monai_unlearn.steering.compose",
            "network": {"_target_": "DenseNet", "spatial_dims": 2, "in_channels": 1, "out_channels": 3,
                        "init_features": 8, "growth_rate": 8, "block_config": [2, 2]},
            "extractor_from": "$@models + '/run_a.pt'",
            "head_from": "$@models + '/run_b.pt'",
            "split": "auto",
        },
        "network": "$@network_def.to('cpu')",
    }
    network = ConfigParser(config).get_parsed_content("network")
    assert isinstance(network, DenseNet), f"the config built a {type(network).__name__}, expected a DenseNet"
    assert_composed_from(network, extractor, head, head_name)


def test_invalid_source_type_raises():
    factory, _ = FAMILIES["densenet"]
    with pytest.raises(TypeError, match="head_from must be a torch.nn.Module, a state dict or a checkpoint path, got int"):
        compose(factory(), 3)


def test_missing_checkpoint_raises(tmp_path):
    factory, _ = FAMILIES["densenet"]
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        compose(factory(), tmp_path / "missing.pt")


def test_all_finetune_trains_extractor(modality_classifier):
    trained = modality_classifier.network
    loader = DataLoader(
        Dataset([dict(entry) for entry in modality_classifier.train], transform=TagForgetd("label in {1}")),
        batch_size=32,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    tuned = compose(trained, copy.deepcopy(trained), finetune="all", finetune_loader=loader, finetune_epochs=1,
                    finetune_learning_rate=1e-3)
    key = "features.conv0.weight"
    assert not torch.equal(tuned.state_dict()[key], trained.state_dict()[key]), "finetune='all' left the stem unchanged"
    assert all(parameter.requires_grad for parameter in tuned.parameters()), "the fine-tune left parameters frozen"
