"""Unit tests of bundle support: layout detection, overlays, metadata versioning and the offline schema check.

These tests read config files and dictionaries only; nothing is trained. Budget: about 5 s.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from conftest import FLAT_BUNDLE, MODALITY_BUNDLE
from monai_unlearn.bundle import (
    BundleLayoutError,
    ForgetRequest,
    build_overlay,
    bump_version,
    check_overlay,
    describe_rule_for_record,
    detect_layout,
    find_training_configs,
    load_bundle_config,
    record_revision,
    verify_bundle_metadata,
    write_overlay,
)
from monai_unlearn.bundle.layout import get_config_item
from monai_unlearn.cli import parse_assignment
from monai_unlearn.engines.random_state import capture_random_state, random_objects, restore_random_state

REQUEST = ForgetRequest(
    rule="label in {1}", method="psg_retain", method_kwargs={"epsilon": 0.1, "box": [0.0, 1.0]}, passes=2,
    learning_rate=0.001,
)

# A model-zoo config shaped like the zoo spleen bundle: the training preprocessing is an expression.
SPLEEN_LIKE = {
    "network_def": {"_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 2},
    "network": "$@network_def.to(@device)",
    "optimizer": {"_target_": "torch.optim.Adam", "params": "$@network.parameters()", "lr": 1e-4},
    "train": {
        "deterministic_transforms": [{"_target_": "LoadImaged", "keys": ["image", "label"]}],
        "random_transforms": [{"_target_": "RandCropByPosNegLabeld", "keys": ["image", "label"]}],
        "preprocessing": {
            "_target_": "Compose",
            "transforms": "$@train#deterministic_transforms + @train#random_transforms",
        },
        "dataset": {"_target_": "CacheDataset", "data": "$[]", "transform": "@train#preprocessing"},
        "dataloader": {"_target_": "DataLoader", "dataset": "@train#dataset", "batch_size": 2},
        "handlers": [{"_target_": "ValidationHandler", "validator": "@validate#evaluator", "epoch_level": True}],
        "trainer": {
            "_target_": "SupervisedTrainer",
            "train_data_loader": "@train#dataloader",
            "network": "@network",
            "optimizer": "@optimizer",
            "train_handlers": "@train#handlers",
        },
    },
    "validate": {
        "dataset": {"_target_": "CacheDataset", "data": "$[]", "transform": {"_target_": "Compose", "transforms": []}},
        "dataloader": {"_target_": "DataLoader", "dataset": "@validate#dataset"},
        "evaluator": {"_target_": "SupervisedEvaluator", "val_data_loader": "@validate#dataloader"},
    },
    "run": ["$@train#trainer.run()"],
}


@pytest.fixture(scope="module")
def zoo_config() -> dict:
    return load_bundle_config(find_training_configs(MODALITY_BUNDLE))


@pytest.fixture(scope="module")
def flat_config() -> dict:
    return load_bundle_config(find_training_configs(FLAT_BUNDLE))


def test_zoo_layout_of_modality_bundle(zoo_config: dict):
    layout = detect_layout(zoo_config)
    assert layout.name == "model-zoo", f"expected the model-zoo layout, got {layout.name}"
    assert layout.trainer_id == "train#trainer"
    assert layout.transforms_id == "train#deterministic_transforms", (
        f"the tag must go to the deterministic list behind the expression, got {layout.transforms_id}"
    )
    assert layout.preprocessing_expression == "$@train#deterministic_transforms + @train#random_transforms"
    assert layout.datalist_id == "train#dataset#data"
    assert layout.validation_loader_id == "validate#dataloader"
    assert layout.run_id == "run"


def test_flat_layout_of_yaml_bundle(flat_config: dict):
    layout = detect_layout(flat_config)
    assert layout.name == "flat", f"expected the flat layout, got {layout.name}"
    assert (layout.trainer_id, layout.loader_id, layout.dataset_id) == ("trainer", "train_dl", "train_dataset")
    assert layout.transforms_id == "train_transforms", f"got {layout.transforms_id}"
    assert layout.preprocessing_expression is None, "the flat bundle's preprocessing is a plain reference"
    assert layout.evaluator_id == "evaluator"
    assert layout.validation_transforms_id == "val_transforms"
    assert layout.run_id == "train"


def test_spleen_style_expression_preprocessing():
    layout = detect_layout(copy.deepcopy(SPLEEN_LIKE))
    assert layout.transforms_id == "train#deterministic_transforms", f"got {layout.transforms_id}"
    assert layout.preprocessing_expression.startswith("$@train#deterministic_transforms")
    assert layout.evaluator_id == "validate#evaluator", "the validator of the ValidationHandler should be found"


def test_inline_transform_list_is_the_target():
    config = copy.deepcopy(SPLEEN_LIKE)
    config["train"]["dataset"]["transform"] = {"_target_": "Compose", "transforms": [{"_target_": "LoadImaged"}]}
    layout = detect_layout(config)
    assert layout.transforms_id == "train#dataset#transform#transforms", f"got {layout.transforms_id}"


def test_expression_without_list_is_rejected():
    config = copy.deepcopy(SPLEEN_LIKE)
    config["train"]["preprocessing"]["transforms"] = "$monai.transforms.Compose([])"
    with pytest.raises(BundleLayoutError, match="none of the ids it refers to is a list of transforms"):
        detect_layout(config)


def test_unknown_layout_names_top_level_ids():
    with pytest.raises(BundleLayoutError, match=r"Unknown bundle layout.*engine_config.*--trainer-id"):
        detect_layout({"engine_config": {"_target_": "SupervisedTrainer"}, "net": {}})


def test_trainer_id_selects_custom_layout():
    config = {"engines": {"fit": copy.deepcopy(SPLEEN_LIKE["train"]["trainer"])}, "train": SPLEEN_LIKE["train"]}
    layout = detect_layout(config, trainer_id="engines#fit")
    assert layout.name == "custom", f"got {layout.name}"
    assert layout.dataset_id == "train#dataset", f"got {layout.dataset_id}"


def test_both_layouts_are_ambiguous():
    config = copy.deepcopy(SPLEEN_LIKE)
    config["trainer"] = {"_target_": "SupervisedTrainer"}
    with pytest.raises(BundleLayoutError, match="both 'train#trainer'.*and 'trainer'"):
        detect_layout(config)


def test_same_request_on_both_layouts(zoo_config: dict, flat_config: dict):
    zoo = build_overlay(zoo_config, detect_layout(zoo_config), REQUEST)
    flat = build_overlay(flat_config, detect_layout(flat_config), REQUEST)
    assert zoo["unlearn"]["method_kwargs"] == flat["unlearn"]["method_kwargs"] == REQUEST.method_kwargs
    for field in ("forget_rule", "method", "passes", "learning_rate", "seed", "batchnorm"):
        assert zoo["unlearn"][field] == flat["unlearn"][field], f"{field} differs between the layouts"
    assert zoo["train#trainer#_target_"] == flat["trainer#_target_"] == "monai_unlearn.engines.UnlearningTrainer"
    assert "+train#deterministic_transforms" in zoo, "the zoo overlay should tag the deterministic list"
    assert "+train_transforms" in flat, "the flat overlay should tag train_transforms"
    assert flat["+val_transforms"][0]["_target_"] == "monai_unlearn.transforms.TagForgetd", (
        "the flat bundle's separate validation list should be tagged for the report"
    )
    assert zoo["optimizer#lr"] == flat["optimizer#lr"] == "@unlearn#learning_rate"


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_overlay_merges_in_json_and_yaml(zoo_config: dict, flat_config: dict, tmp_path: Path, suffix: str):
    for source, config in ((MODALITY_BUNDLE, zoo_config), (FLAT_BUNDLE, flat_config)):
        layout = detect_layout(config)
        overlay_path = write_overlay(build_overlay(config, layout, REQUEST), tmp_path / f"{source.name}{suffix}")
        merged = load_bundle_config([*find_training_configs(source), overlay_path])
        trainer = get_config_item(merged, layout.trainer_id)
        assert trainer["_target_"] == "monai_unlearn.engines.UnlearningTrainer", f"{source.name}{suffix}: not swapped"
        assert trainer["loss_function"] == get_config_item(config, layout.trainer_id)["loss_function"], (
            "the bundle's other trainer arguments must be kept"
        )
        transforms = get_config_item(merged, layout.transforms_id)
        assert transforms[-1]["_target_"] == "monai_unlearn.transforms.TagForgetd", f"{source.name}{suffix}: no tag"
        assert len(transforms) == len(get_config_item(config, layout.transforms_id)) + 1


def test_wrong_layout_overlay_is_rejected(zoo_config: dict, flat_config: dict):
    zoo_overlay = build_overlay(zoo_config, detect_layout(zoo_config), REQUEST)
    with pytest.raises(BundleLayoutError, match=r"refers to 'train.*flat layout"):
        check_overlay(flat_config, zoo_overlay, detect_layout(flat_config))


def test_overlay_without_trainer_swap_is_rejected(flat_config: dict):
    overlay = build_overlay(flat_config, detect_layout(flat_config), REQUEST)
    del overlay["trainer#_target_"]
    with pytest.raises(BundleLayoutError, match="would run its ordinary training"):
        check_overlay(flat_config, overlay, detect_layout(flat_config))


def test_hand_written_config_is_not_overwritten(tmp_path: Path, flat_config: dict):
    target = tmp_path / "revise.yaml"
    target.write_text("my_setting: 1\n")
    with pytest.raises(FileExistsError, match="was not generated by monai-unlearn"):
        write_overlay(build_overlay(flat_config, detect_layout(flat_config), REQUEST), target)
    assert target.read_text() == "my_setting: 1\n", "the user's file must be left unchanged"


@pytest.mark.parametrize(
    "version, part, expected", [("0.1.0", "patch", "0.1.1"), ("0.1.9", "patch", "0.1.10"), ("1.4.2", "minor", "1.5.0")]
)
def test_bump_version(version: str, part: str, expected: str):
    assert bump_version(version, part) == expected


@pytest.mark.parametrize("version", ["1.0", "0.2.0rc1", "", "v1.0.0"])
def test_bump_version_rejects_non_semver(version: str):
    with pytest.raises(ValueError, match="MAJOR.MINOR.PATCH"):
        bump_version(version)


def test_record_revision_puts_entry_first(tmp_path: Path):
    meta = tmp_path / "metadata.json"
    meta.write_text(json.dumps({"version": "0.3.2", "changelog": {"0.3.2": "older"}, "task": "t"}))
    assert record_revision(meta, "revised", "minor") == "0.4.0"
    written = json.loads(meta.read_text())
    assert written["version"] == "0.4.0"
    assert list(written["changelog"]) == ["0.4.0", "0.3.2"], f"newest entry first, got {list(written['changelog'])}"
    assert list(written) == ["version", "changelog", "task"], "the other keys keep their order"


def test_record_revision_keeps_indentation(tmp_path: Path):
    meta = tmp_path / "metadata.json"
    original = {"version": "1.0.0", "changelog": {"1.0.0": "first"}, "task": "t", "authors": ["a", "b"]}
    meta.write_text(json.dumps(original, indent=4) + "\n")
    record_revision(meta, "revised", "patch")
    before = (json.dumps(original, indent=4) + "\n").splitlines()
    after = meta.read_text().splitlines()
    assert after[0] == "{", f"the file should still start with an object: {after[:1]}"
    assert after[1].startswith("    \"version\""), f"4-space indentation should stay: {after[:2]}"
    unchanged = [line for line in before if line in after]
    assert len(unchanged) == len(before) - 1, f"only the version line should change, kept {len(unchanged)} of {len(before)}"


def test_identifiers_are_not_recorded_in_clear():
    text = describe_rule_for_record("case_id in {'hippocampus_001', 'hippocampus_017'} or site == 'B'")
    assert "hippocampus_001" not in text, f"case IDs leaked: {text}"
    assert "<2 value(s)>" in text, f"the IDs should be counted: {text}"
    assert "site == 'B'" in text, f"non-identifying parts should stay readable: {text}"
    assert describe_rule_for_record("PatientID == 'X123'") == "PatientID in <1 value(s)>"
    assert describe_rule_for_record("label in {1}") == "label in [1]"


@pytest.mark.parametrize("bundle", [MODALITY_BUNDLE, FLAT_BUNDLE], ids=["zoo", "flat"])
def test_shipped_metadata_passes_offline_schema(bundle: Path):
    verify_bundle_metadata(bundle / "configs" / "metadata.json")


def test_metadata_failing_schema_names_field(tmp_path: Path):
    metadata = json.loads((FLAT_BUNDLE / "configs" / "metadata.json").read_text())
    del metadata["network_data_format"]["outputs"]["pred"]["num_channels"]
    meta = tmp_path / "metadata.json"
    meta.write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match="network_data_format/outputs/pred: 'num_channels' is a required property"):
        verify_bundle_metadata(meta)


def test_random_state_survives_weights_only_load(tmp_path: Path):
    from monai.data import DataLoader, Dataset
    from monai.transforms import Compose, RandFlipd, RandGaussianNoised

    dataset = Dataset([{"image": torch.zeros(1, 4, 4)}], Compose([RandFlipd("image", prob=0.5), RandGaussianNoised("image")]))
    objects = random_objects([DataLoader(dataset)])
    assert len(objects) >= 3, f"the Compose and both random transforms carry generators, found {len(objects)}"
    state = capture_random_state(objects)
    torch.save(state, tmp_path / "state.pt")
    expected = [objects[0].randint(1000, size=5).tolist(), torch.rand(3)]
    restore_random_state(torch.load(tmp_path / "state.pt", weights_only=True), objects)
    assert objects[0].randint(1000, size=5).tolist() == expected[0], "a transform generator was not restored"
    assert torch.equal(torch.rand(3), expected[1]), "torch's global generator was not restored"


def test_cli_set_parses_json_values():
    assert parse_assignment("batch_size=16") == ("batch_size", 16)
    assert parse_assignment("network_def#block_config=[2, 2]") == ("network_def#block_config", [2, 2])
    assert parse_assignment("dataset_dir=/data/x") == ("dataset_dir", "/data/x")
