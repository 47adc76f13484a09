"""The PneumoniaMNIST dataset builder: request groups that make a random 10 % forget set, on the real file."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from conftest import data_dir
from monai_unlearn.data import build_pneumonia_dataset
from monai_unlearn.transforms import parse_rule

COUNTS = (100, 20, 30)


@pytest.fixture(scope="module")
def datalist(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("pneumonia")
    path = build_pneumonia_dataset(folder, data_dir=data_dir(), counts=COUNTS, seed=0)
    return json.loads(path.read_text())


def test_split_sizes_and_balance(datalist: dict):
    for split, count in zip(("training", "validation", "test"), COUNTS):
        entries = datalist[split]
        assert len(entries) == count, f"{split} has {len(entries)} entries, expected {count}"
        labels = Counter(entry["label"] for entry in entries)
        assert labels[0] == labels[1], f"{split} is not class-balanced: {dict(labels)}"


def test_request_groups_are_equal_tenths(datalist: dict):
    groups = Counter(entry["request_group"] for entry in datalist["training"])
    assert sorted(groups) == list(range(10)), f"training request groups {sorted(groups)}, expected 0 to 9"
    assert set(groups.values()) == {COUNTS[0] // 10}, f"group sizes {dict(groups)}, expected {COUNTS[0] // 10} each"


def test_heldout_images_are_never_requested(datalist: dict):
    rule = parse_rule("request_group == 0")
    for split in ("validation", "test"):
        selected = [entry["case_id"] for entry in datalist[split] if rule.matches(entry)]
        assert selected == [], f"the rule selects {len(selected)} {split} images; held-out images must have group -1"


def test_groups_depend_on_seed(tmp_path):
    first_path = build_pneumonia_dataset(tmp_path / "a", data_dir=data_dir(), counts=(50, 2, 2), seed=1)
    second_path = build_pneumonia_dataset(tmp_path / "b", data_dir=data_dir(), counts=(50, 2, 2), seed=2)
    first, second = json.loads(first_path.read_text()), json.loads(second_path.read_text())
    groups_a = [entry["request_group"] for entry in first["training"]]
    groups_b = [entry["request_group"] for entry in second["training"]]
    assert groups_a != groups_b, "two seeds gave the same request groups"


def test_too_many_groups_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="Invalid request_groups 60"):
        build_pneumonia_dataset(tmp_path, data_dir=data_dir(), counts=(50, 2, 2), request_groups=60)
