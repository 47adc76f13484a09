"""Tests of the TagForgetd transform, alone and inside a MONAI Dataset and DataLoader."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset
from monai.transforms import Compose, MapTransform

from monai_unlearn.transforms import LabelIn, MissingFieldError, TagForgetd, TagForgetD, TagForgetDict

DATALIST = [
    {"image": "a.nii.gz", "label": 0, "site": "A"},
    {"image": "b.nii.gz", "label": 1, "site": "B"},
    {"image": "c.nii.gz", "label": 1, "site": "A"},
    {"image": "d.nii.gz", "label": 0, "site": "B"},
]


def test_tag_forget_writes_integer_flags():
    transform = TagForgetd("site == 'B'")

    flags = [transform(entry)["forget"] for entry in DATALIST]

    assert flags == [0, 1, 0, 1], f"site == 'B' must tag the entries as [0, 1, 0, 1], got {flags}"
    assert all(type(flag) is int for flag in flags), f"flags must be int, not {[type(flag).__name__ for flag in flags]}"


def test_tag_forget_accepts_rule_object():
    transform = TagForgetd(LabelIn([1]))

    assert transform({"label": np.array([0, 1])})["forget"] == 1, "a one-hot label of class 1 must be tagged 1"


def test_tag_forget_custom_key():
    transform = TagForgetd("label in {1}", forget_key="is_forget")

    output = transform(DATALIST[1])

    assert output["is_forget"] == 1, f"the flag must be written under 'is_forget', got {output}"
    assert "forget" not in output, "with forget_key='is_forget' no 'forget' key may be written"


def test_tag_forget_keeps_input_unchanged():
    entry = dict(DATALIST[1])

    output = TagForgetd("label in {1}")(entry)

    assert "forget" not in entry, "TagForgetd must not write the flag into the caller's dictionary"
    assert {key: output[key] for key in entry} == entry, "TagForgetd must keep every other field as it was"


def test_tag_forget_is_map_transform():
    transform = TagForgetd("site == 'B' and label in {1}")

    assert isinstance(transform, MapTransform), "TagForgetd must be a MONAI MapTransform"
    assert sorted(transform.keys) == ["label", "site"], f"its keys must be the rule's fields, got {transform.keys}"


def test_tag_forget_raises_on_missing_field():
    transform = TagForgetd("Manufacturer == 'SIEMENS'")

    with pytest.raises(MissingFieldError, match="'Manufacturer'") as caught:
        transform({"image": "a.dcm"})
    assert isinstance(caught.value, KeyError), "a missing field must raise a KeyError subclass"


def test_tag_forget_allow_missing_keys_retains(caplog):
    transform = TagForgetd("Manufacturer == 'SIEMENS'", allow_missing_keys=True)

    with caplog.at_level(logging.WARNING, logger="monai_unlearn.transforms.tag_forget"):
        outputs = [transform({"image": "a.dcm"}), transform({"image": "b.dcm"})]
        tagged = transform({"image": "c.dcm", "Manufacturer": "SIEMENS "})

    assert [output["forget"] for output in outputs] == [0, 0], "samples without the field must be retained (flag 0)"
    assert tagged["forget"] == 1, "a sample with the field must still be tagged by the rule"
    assert transform.missing_count == 2, (
        f"missing_count must be 2 after two samples without the field, got {transform.missing_count}"
    )
    warnings = [record for record in caplog.records if "lacks a field" in record.getMessage()]
    assert len(warnings) == 1, f"the missing field must be logged once, not {len(warnings)} times"


def test_tag_forget_datalist_rejects_rule_matching_nothing():
    with pytest.raises(ValueError, match=re.escape('"site == \'Z\'" matches none of the 4 datalist entries')):
        TagForgetd("site == 'Z'", datalist=DATALIST)


def test_tag_forget_datalist_rejects_rule_matching_everything():
    with pytest.raises(ValueError, match=re.escape("matches all 4 datalist entries")):
        TagForgetd("label in {0, 1}", datalist=DATALIST)


def test_tag_forget_datalist_rejects_missing_field():
    datalist = DATALIST + [{"image": "e.nii.gz", "label": 1}]

    with pytest.raises(MissingFieldError, match=re.escape("Datalist entry 4")):
        TagForgetd("site == 'B'", datalist=datalist)


def test_tag_forget_datalist_accepts_valid_rule():
    transform = TagForgetd("label in {1}", datalist=DATALIST)

    assert transform(DATALIST[2])["forget"] == 1, "a rule checked against the datalist must still tag samples"


def test_tag_forget_aliases():
    assert TagForgetD is TagForgetd, "TagForgetD must be an alias of TagForgetd"
    assert TagForgetDict is TagForgetd, "TagForgetDict must be an alias of TagForgetd"


def test_tag_forget_in_dataset_and_dataloader():
    generator = np.random.default_rng(0)
    datalist = [
        {"image": generator.random((1, 8, 8), dtype=np.float32), "label": np.array(label), "site": site}
        for label, site in [(0, "A"), (1, "B"), (1, "A"), (0, "B"), (1, "B")]
    ]
    dataset = Dataset(data=datalist, transform=Compose([TagForgetd("label in {1} and site == 'B'")]))
    loader = DataLoader(dataset, batch_size=5, shuffle=False, num_workers=0)

    batch = next(iter(loader))

    flags = batch["forget"]
    assert isinstance(flags, torch.Tensor), f"the collated flags must be a tensor, got {type(flags).__name__}"
    assert flags.dtype == torch.int64, f"the collated flags must be int64, got {flags.dtype}"
    assert flags.tolist() == [0, 1, 0, 0, 1], f"collated flags {flags.tolist()}, expected [0, 1, 0, 0, 1]"
    assert batch["image"].shape == (5, 1, 8, 8), f"images must collate beside the flags, got {batch['image'].shape}"
