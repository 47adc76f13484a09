"""Tests of the forget rules, the rule expression parser and split_datalist."""

from __future__ import annotations

import json
import re

import numpy as np
import pydicom
import pytest
import torch

from monai_unlearn.transforms import (
    COMPARISONS,
    AllOf,
    AnyOf,
    CaseIdIn,
    FieldCompare,
    FieldEquals,
    FieldIn,
    FieldMatches,
    ForgetRule,
    LabelIn,
    MissingFieldError,
    Not,
    as_rule,
    parse_rule,
    split_datalist,
)

CASE_IDS = ["P001", "P002", "P017"]


# --- LabelIn ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "label",
    [
        1,
        np.int64(1),
        np.array(1),
        np.array([1]),
        torch.tensor(1),
        torch.tensor([1]),
        np.array([0, 1, 0]),
        torch.tensor([0.0, 1.0, 0.0]),
        [1],
    ],
    ids=[
        "int",
        "numpy-scalar",
        "numpy-0d",
        "numpy-one-element",
        "torch-0d",
        "torch-one-element",
        "numpy-one-hot",
        "torch-one-hot",
        "list-one-element",
    ],
)
def test_label_in_accepts_label_layouts(label):
    rule = LabelIn([1])

    assert rule({"label": label}) is True, f"LabelIn([1]) must select the label {label!r}"


@pytest.mark.parametrize(
    "label",
    [0, np.array(2), torch.tensor(0), np.array([1, 0, 0]), torch.tensor([0, 0, 1])],
    ids=["int", "numpy-0d", "torch-0d", "numpy-one-hot", "torch-one-hot"],
)
def test_label_in_retains_other_labels(label):
    rule = LabelIn([1])

    assert rule({"label": label}) is False, f"LabelIn([1]) must not select the label {label!r}"


def test_label_in_several_classes():
    rule = LabelIn([0, 2])

    selected = [rule({"label": label}) for label in range(4)]
    assert selected == [True, False, True, False], f"LabelIn([0, 2]) selected {selected} for labels 0..3"


def test_label_in_custom_key():
    rule = LabelIn([3], key="class_index")

    assert rule.fields() == ["class_index"], f"LabelIn(key='class_index') reads {rule.fields()}"
    assert rule({"class_index": 3}) is True, "LabelIn with a custom key must read that key"


def test_label_in_rejects_non_integer_classes():
    with pytest.raises(ValueError, match=re.escape("integer class indices, got 1.5")):
        LabelIn([1.5])


def test_label_in_rejects_bool_class():
    with pytest.raises(ValueError, match=re.escape("integer class indices, got True")):
        LabelIn([True])


def test_label_in_rejects_text_label():
    with pytest.raises(ValueError, match=re.escape("got 'benign'")):
        LabelIn([1])({"label": "benign"})


def test_label_in_rejects_soft_label():
    with pytest.raises(ValueError, match=re.escape("shape (2,)")):
        LabelIn([1])({"label": np.array([0.3, 0.7])})


def test_label_in_rejects_fractional_label():
    # int(1.5) == 1, so a fractional label must raise rather than count as class 1.
    with pytest.raises(ValueError, match=re.escape("got 1.5")):
        LabelIn([1])({"label": 1.5})


def test_label_in_accepts_integral_float_label():
    assert LabelIn([1])({"label": torch.tensor(1.0)}) is True, "a float label 1.0 must count as class 1"


# --- FieldEquals, FieldIn, FieldMatches -------------------------------------------------------------------------


@pytest.mark.parametrize("observed", ["SIEMENS", "SIEMENS ", "Siemens", "  siemens\x00", "SIEMENS\x00\x00"])
def test_field_equals_ignores_padding_and_case(observed):
    rule = FieldEquals("Manufacturer", "Siemens")

    assert rule({"Manufacturer": observed}) is True, f"{observed!r} must equal 'Siemens' after stripping and casefold"


def test_field_equals_case_sensitive():
    rule = FieldEquals("Manufacturer", "Siemens", case_sensitive=True)

    assert rule({"Manufacturer": "SIEMENS"}) is False, "case_sensitive=True must tell 'SIEMENS' from 'Siemens'"
    assert rule({"Manufacturer": "Siemens "}) is True, "case_sensitive=True must still strip padding"


def test_field_equals_other_value():
    rule = FieldEquals("Manufacturer", "SIEMENS")

    assert rule({"Manufacturer": "GE MEDICAL SYSTEMS"}) is False, "'GE MEDICAL SYSTEMS' must not equal 'SIEMENS'"


def test_field_equals_multi_valued_field():
    rule = FieldEquals("ImageType", "primary")

    assert rule({"ImageType": ["ORIGINAL", "PRIMARY", "M"]}) is True, "a multi-valued field must match any value"
    assert rule({"ImageType": ["DERIVED", "SECONDARY"]}) is False, "no value of the field equals 'primary'"


def test_field_equals_numbers():
    rule = FieldEquals("site", 2)

    assert rule({"site": 2}) is True, "FieldEquals('site', 2) must select site 2"
    assert rule({"site": np.array(2)}) is True, "FieldEquals must read a 0-d array as its scalar"
    assert rule({"site": 3}) is False, "FieldEquals('site', 2) must retain site 3"


@pytest.mark.parametrize(
    "rule",
    [FieldEquals("ImageType", "PRIMARY"), FieldIn("ImageType", ["primary"]), FieldMatches("ImageType", "^primary$")],
    ids=["FieldEquals", "FieldIn", "FieldMatches"],
)
def test_rules_read_pydicom_multi_value(rule):
    # pydicom stores multi-valued attributes such as ImageType as MultiValue, which is not a list or tuple.
    dataset = pydicom.Dataset()
    dataset.ImageType = ["ORIGINAL", "PRIMARY", "M"]

    assert rule({"ImageType": dataset.ImageType}) is True, (
        f"{rule!r} must select a pydicom {type(dataset.ImageType).__name__} ImageType {list(dataset.ImageType)}"
    )


def test_field_in_values():
    rule = FieldIn("site", ["A", "c"])

    selected = [rule({"site": site}) for site in ["A", "B", "C ", "a"]]
    assert selected == [True, False, True, True], f"FieldIn('site', ['A', 'c']) selected {selected}"


def test_field_in_case_sensitive():
    rule = FieldIn("site", ["A"], case_sensitive=True)

    assert rule({"site": "a"}) is False, "case_sensitive=True must tell 'a' from 'A'"


def test_field_in_multi_valued_field():
    rule = FieldIn("ImageType", ["derived"])

    assert rule({"ImageType": ("DERIVED", "SECONDARY")}) is True, "a multi-valued field must match any listed value"
    assert rule({"ImageType": ("ORIGINAL", "PRIMARY")}) is False, "no value of the field is listed"


def test_field_in_rejects_empty_values():
    with pytest.raises(ValueError, match=re.escape("FieldIn('site') got an empty set of values")):
        FieldIn("site", [])


def test_field_matches_regex():
    rule = FieldMatches("ManufacturerModelName", "skyra|prisma")

    assert rule({"ManufacturerModelName": "Skyra"}) is True, "'Skyra' must match 'skyra|prisma' ignoring case"
    assert rule({"ManufacturerModelName": "DISCOVERY MR750"}) is False, "'DISCOVERY MR750' must not match"


def test_field_matches_case_sensitive():
    rule = FieldMatches("ManufacturerModelName", "skyra", case_sensitive=True)

    assert rule({"ManufacturerModelName": "Skyra"}) is False, "case_sensitive=True must not match 'Skyra'"


def test_field_matches_anchored_pattern_after_strip():
    rule = FieldMatches("SeriesDescription", "^t1$")

    assert rule({"SeriesDescription": " T1 "}) is True, "the value must be stripped before an anchored search"


def test_field_matches_multi_valued_field():
    rule = FieldMatches("ImageType", "^derived$")

    assert rule({"ImageType": ["ORIGINAL", "DERIVED"]}) is True, "a multi-valued field must match when any value does"


def test_field_matches_rejects_invalid_regex():
    with pytest.raises(ValueError, match=re.escape("Invalid regular expression '(skyra' for field 'model'")):
        FieldMatches("model", "(skyra")


# --- FieldCompare -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "expected"),
    [
        ("<", [True, False, False]),
        ("<=", [True, True, False]),
        (">", [False, False, True]),
        (">=", [False, True, True]),
        ("==", [False, True, False]),
        ("!=", [True, False, True]),
    ],
)
def test_field_compare_operators(op, expected):
    rule = FieldCompare("volume_ml", op, 4.2)

    selected = [rule({"volume_ml": value}) for value in (3.0, 4.2, 5.0)]
    assert selected == expected, f"volume_ml {op} 4.2 selected {selected} for 3.0, 4.2, 5.0; expected {expected}"


def test_field_compare_covers_every_operator():
    assert set(COMPARISONS) == {"<", "<=", ">", ">=", "==", "!="}, f"unexpected operators {list(COMPARISONS)}"


def test_field_compare_reads_arrays_and_numeric_text():
    rule = FieldCompare("volume_ml", ">", 4.0)

    assert rule({"volume_ml": np.array(4.5)}) is True, "a 0-d array 4.5 must compare as 4.5"
    assert rule({"volume_ml": torch.tensor([4.5])}) is True, "a one-element tensor 4.5 must compare as 4.5"
    assert rule({"volume_ml": "4.5"}) is True, "the numeric text '4.5' from a CSV datalist must compare as 4.5"


def test_field_compare_rejects_nan():
    rule = FieldCompare("volume_ml", ">", 4.0)

    with pytest.raises(ValueError, match="Field 'volume_ml' is NaN"):
        rule({"volume_ml": float("nan")})


def test_field_compare_rejects_non_numeric():
    rule = FieldCompare("PatientAge", ">", 60)

    message = "Field 'PatientAge' must be numeric for 'PatientAge > 60', got '065Y'"
    with pytest.raises(ValueError, match=re.escape(message)):
        rule({"PatientAge": "065Y"})


def test_field_compare_rejects_none():
    rule = FieldCompare("volume_ml", ">", 4.0)

    with pytest.raises(ValueError, match="got None"):
        rule({"volume_ml": None})


def test_field_compare_rejects_unknown_operator():
    with pytest.raises(ValueError, match=re.escape("Invalid comparison '=>'")):
        FieldCompare("volume_ml", "=>", 4.0)


@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), "4.2", True])
def test_field_compare_rejects_invalid_threshold(threshold):
    with pytest.raises(ValueError, match=re.escape(f"finite numeric threshold, got {threshold!r}")):
        FieldCompare("volume_ml", ">", threshold)


# --- CaseIdIn ---------------------------------------------------------------------------------------------------


def assert_selects_case_ids(rule: CaseIdIn) -> None:
    for case_id in CASE_IDS:
        assert rule({"case_id": case_id}) is True, f"case {case_id!r} is in the list but was not selected"
    assert rule({"case_id": "P003"}) is False, "case 'P003' is not in the list but was selected"


def test_case_id_in_from_list():
    assert_selects_case_ids(CaseIdIn(CASE_IDS))


def test_case_id_in_strips_ids():
    rule = CaseIdIn([" P001 ", "P002"])

    assert rule({"case_id": "P001"}) is True, "IDs from the list must be stripped"
    assert rule({"case_id": "P002 "}) is True, "IDs from the sample must be stripped"


def test_case_id_in_compares_numbers_as_text():
    rule = CaseIdIn([17, "18"])

    assert rule({"case_id": "17"}) is True, "the numeric ID 17 must match the text '17'"
    assert rule({"case_id": 18}) is True, "the text ID '18' must match the number 18"


def test_case_id_in_from_txt(tmp_path):
    path = tmp_path / "forget_cases.txt"
    path.write_text("# deletion requests\nP001\n\n  P002\nP017\n", encoding="utf-8")

    rule = CaseIdIn(path)

    assert_selects_case_ids(rule)
    assert rule.ids == set(CASE_IDS), f"comment or blank lines leaked into the IDs: {sorted(rule.ids)}"


def test_case_id_in_from_json(tmp_path):
    path = tmp_path / "forget_cases.json"
    path.write_text(json.dumps(CASE_IDS), encoding="utf-8")

    assert_selects_case_ids(CaseIdIn(str(path)))


def test_case_id_in_from_csv_with_header(tmp_path):
    path = tmp_path / "forget_cases.csv"
    path.write_text("case_id,reason\nP001,consent withdrawn\nP002,deletion request\nP017,consent withdrawn\n")

    rule = CaseIdIn(path)

    assert_selects_case_ids(rule)
    assert "case_id" not in rule.ids, "the CSV header must not count as a case ID"


def test_case_id_in_csv_custom_header(tmp_path):
    path = tmp_path / "forget_cases.csv"
    path.write_text("PatientID,site\nP001,A\nP002,B\nP017,A\n")

    rule = CaseIdIn(path, key="PatientID", id_column="PatientID")

    assert rule.ids == set(CASE_IDS), f"with id_column='PatientID' the IDs must be {CASE_IDS}, got {sorted(rule.ids)}"


def test_case_id_in_csv_quoted_ids(tmp_path):
    # Spreadsheet exports quote fields, and the quotes are CSV syntax, not part of the ID.
    path = tmp_path / "forget_cases.csv"
    path.write_text('case_id,reason\n"P001","consent withdrawn, 2024"\n"P002",deletion request\nP017,other\n')

    rule = CaseIdIn(path)

    assert rule.ids == set(CASE_IDS), f"quoted CSV fields must be read without quotes, got {sorted(rule.ids)}"


@pytest.mark.parametrize("suffix", [".txt", ".csv"])
def test_case_id_in_file_with_utf8_bom(tmp_path, suffix):
    # Notepad and Excel ("CSV UTF-8") can write a byte order mark, which must not become part of the first ID.
    path = tmp_path / f"forget_cases{suffix}"
    path.write_text("\n".join(CASE_IDS) + "\n", encoding="utf-8-sig")

    rule = CaseIdIn(path)

    assert rule({"case_id": "P001"}) is True, (
        f"the first ID of a {suffix} file with a byte order mark was read as one of {sorted(rule.ids)}"
    )


def test_case_id_in_describe_hides_ids(tmp_path):
    path = tmp_path / "forget_cases.txt"
    path.write_text("\n".join(CASE_IDS))

    for rule in (CaseIdIn(CASE_IDS), CaseIdIn(path)):
        text = rule.describe() + repr(rule)
        leaked = [case_id for case_id in CASE_IDS if case_id in text]
        assert leaked == [], f"describe() or repr() shows patient IDs {leaked}: {text!r}"
        assert "3 case IDs" in rule.describe(), f"describe() must give the number of IDs, got {rule.describe()!r}"


def test_case_id_in_rejects_missing_file(tmp_path):
    path = tmp_path / "absent.txt"

    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        CaseIdIn(path)


def test_case_id_in_rejects_empty_list():
    with pytest.raises(ValueError, match="got no case IDs"):
        CaseIdIn(["", "  "])


def test_case_id_in_rejects_json_object(tmp_path):
    path = tmp_path / "forget_cases.json"
    path.write_text(json.dumps({"ids": CASE_IDS}))

    with pytest.raises(ValueError, match="must contain a JSON list of case IDs, got dict"):
        CaseIdIn(path)


# --- AllOf, AnyOf, Not ------------------------------------------------------------------------------------------


def test_all_of_needs_every_rule():
    rule = AllOf([FieldEquals("site", "B"), LabelIn([1])])

    assert rule({"site": "B", "label": 1}) is True, "AllOf must select a sample that every rule selects"
    assert rule({"site": "B", "label": 0}) is False, "AllOf must retain a sample that one rule retains"
    assert rule.fields() == ["label", "site"], f"AllOf must read the fields of all its rules, got {rule.fields()}"


def test_any_of_needs_one_rule():
    rule = AnyOf([FieldEquals("site", "B"), LabelIn([1])])

    assert rule({"site": "A", "label": 1}) is True, "AnyOf must select a sample that one rule selects"
    assert rule({"site": "A", "label": 0}) is False, "AnyOf must retain a sample that no rule selects"


def test_not_inverts_rule():
    rule = Not(FieldEquals("site", "B"))

    assert rule({"site": "A"}) is True, "Not(site == 'B') must select site A"
    assert rule({"site": "B"}) is False, "Not(site == 'B') must retain site B"
    assert rule.fields() == ["site"], f"Not must read the fields of its rule, got {rule.fields()}"


def test_combinators_accept_expressions():
    rule = AllOf(["site == 'B'", Not("label in {0}")])

    assert rule({"site": "B", "label": 1}) is True, "AllOf must parse expression strings into rules"
    assert rule.describe() == "(site == 'B' and not label in [0])", f"unexpected description {rule.describe()!r}"


def test_all_of_rejects_empty():
    with pytest.raises(ValueError, match="at least one rule"):
        AllOf([])


def test_as_rule_rejects_callable():
    with pytest.raises(TypeError, match="got function"):
        as_rule(lambda data: True)


def test_rule_reports_missing_field():
    rule = FieldEquals("Manufacturer", "SIEMENS")

    with pytest.raises(MissingFieldError, match="'Manufacturer'") as caught:
        rule({"image": "a.nii.gz", "label": 1})
    assert isinstance(caught.value, KeyError), "MissingFieldError must be a KeyError"
    assert "image, label" in str(caught.value), f"the message must list the sample's fields: {caught.value}"


# --- parse_rule -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "rule_type", "selected", "retained"),
    [
        ("label in {1}", LabelIn, {"label": 1}, {"label": 0}),
        ("label in [1, 2]", LabelIn, {"label": 2}, {"label": 0}),
        ("label not in {0}", Not, {"label": 1}, {"label": 0}),
        ("site == 'B'", FieldEquals, {"site": "b "}, {"site": "A"}),
        ("site != 'B'", Not, {"site": "A"}, {"site": "B"}),
        ("site in {'A', 'C'}", FieldIn, {"site": "C"}, {"site": "B"}),
        ("site not in ['A', 'C']", Not, {"site": "B"}, {"site": "A"}),
        ("volume_ml > 4.2", FieldCompare, {"volume_ml": 5}, {"volume_ml": 4.2}),
        ("volume_ml >= 4.2", FieldCompare, {"volume_ml": 4.2}, {"volume_ml": 4}),
        ("volume_ml < 4.2", FieldCompare, {"volume_ml": 4}, {"volume_ml": 4.2}),
        ("volume_ml <= 4.2", FieldCompare, {"volume_ml": 4.2}, {"volume_ml": 5}),
        ("volume_ml == -1", FieldCompare, {"volume_ml": -1}, {"volume_ml": 1}),
        ("volume_ml != 0", FieldCompare, {"volume_ml": 1}, {"volume_ml": 0}),
        ("matches(Model, 'skyra|prisma')", FieldMatches, {"Model": "Prisma"}, {"Model": "MR750"}),
        ("'Patient Age' > 60", FieldCompare, {"Patient Age": 61}, {"Patient Age": 60}),
        ("site == 'B' and label in {1}", AllOf, {"site": "B", "label": 1}, {"site": "B", "label": 0}),
        ("site == 'B' or label in {1}", AnyOf, {"site": "A", "label": 1}, {"site": "A", "label": 0}),
        ("not site == 'B'", Not, {"site": "A"}, {"site": "B"}),
        (
            "(site == 'B' or site == 'C') and not volume_ml > 4",
            AllOf,
            {"site": "C", "volume_ml": 3},
            {"site": "C", "volume_ml": 5},
        ),
    ],
)
def test_parse_rule_supported_forms(expression, rule_type, selected, retained):
    rule = parse_rule(expression)

    assert isinstance(rule, rule_type), f"{expression!r} built {type(rule).__name__}, expected {rule_type.__name__}"
    assert rule(selected) is True, f"{expression!r} must select {selected}"
    assert rule(retained) is False, f"{expression!r} must retain {retained}"


def test_parse_rule_text_label_values():
    rule = parse_rule("label in {'benign'}")

    assert type(rule) is FieldIn, f"'label in' with text values must build FieldIn, got {type(rule).__name__}"


def test_parse_rule_strips_whitespace():
    rule = parse_rule("  label in {1}\n")

    assert isinstance(rule, ForgetRule), "surrounding whitespace must not break parsing"


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "expected a non-empty expression"),
        ("   ", "expected a non-empty expression"),
        ("site ==", "Invalid forget rule 'site =='"),
        ("site == other_field", "the right-hand side must be a literal"),
        ("1 < volume_ml", "the left-hand side must be a field name"),
        ("site is 'B'", "unsupported operator Is"),
        ("0 < volume_ml < 4", "Invalid forget rule '0 < volume_ml < 4'. Examples"),
        ("volume_ml + 1", "Invalid forget rule 'volume_ml + 1'. Examples"),
        ("len(site)", "Invalid forget rule 'len(site)'. Examples"),
        ("__import__('os')", "Invalid forget rule"),
        ("site in 'B'", "'in' needs a set or list, got 'B'"),
        ("site in {}", "'in' needs a set or list, got {}"),
        ("site < 'B'", "'<' needs a number, got 'B'"),
        ("matches(Model)", "use matches(field, 'regular expression')"),
        ("matches(Model, pattern='x')", "use matches(field, 'regular expression')"),
        ("matches(Model, 3)", "the pattern of matches() must be a string"),
        ("matches(Model, '(')", "Invalid regular expression '('"),
    ],
)
def test_parse_rule_rejects_unsupported(expression, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_rule(expression)


def test_parse_rule_rejects_non_string():
    with pytest.raises(ValueError, match=re.escape("Invalid forget rule 42")):
        parse_rule(42)


# --- split_datalist ---------------------------------------------------------------------------------------------


DATALIST = [
    {"image": "a.nii.gz", "label": 0, "site": "A"},
    {"image": "b.nii.gz", "label": 1, "site": "B"},
    {"image": "c.nii.gz", "label": 1, "site": "A"},
    {"image": "d.nii.gz", "label": 0, "site": "B"},
]


def test_single_equals_suggests_comparison():
    with pytest.raises(ValueError, match="Compare with '==', not '='"):
        parse_rule("Manufacturer = 'SIEMENS'")


def test_split_datalist_keeps_order():
    forget, retain = split_datalist(DATALIST, "label in {1}")

    assert [entry["image"] for entry in forget] == ["b.nii.gz", "c.nii.gz"], f"forget split {forget}"
    assert [entry["image"] for entry in retain] == ["a.nii.gz", "d.nii.gz"], f"retain split {retain}"


def test_split_datalist_returns_copies():
    forget, _ = split_datalist(DATALIST, "site == 'B'")

    forget[0]["label"] = 99
    assert DATALIST[1]["label"] == 1, "split_datalist must return copies, not the caller's dictionaries"


def test_split_datalist_rejects_rule_matching_nothing():
    with pytest.raises(ValueError, match=re.escape('"site == \'Z\'" matches none of the 4 datalist entries')):
        split_datalist(DATALIST, "site == 'Z'")


def test_empty_split_lists_present_values():
    with pytest.raises(ValueError, match=re.escape("Values present: site: 'A', 'B'.")):
        split_datalist(DATALIST, "site == 'Z'")


def test_empty_split_hides_identifier_values():
    datalist = [{**entry, "case_id": f"patient_{index}"} for index, entry in enumerate(DATALIST)]

    with pytest.raises(ValueError) as info:
        split_datalist(datalist, "case_id in {'patient_9'}")

    message = str(info.value)
    assert "case_id: 4 distinct values (not shown" in message, f"identifier values should be counted: {message}"
    assert "patient_0" not in message, f"an identifier leaked into the error message: {message}"
    assert "patient_9" not in message, f"the rule's own identifier leaked into the error message: {message}"


def test_split_datalist_rejects_rule_matching_everything():
    with pytest.raises(ValueError, match=re.escape('"label in [0, 1]" matches all 4 datalist entries')):
        split_datalist(DATALIST, "label in {0, 1}")


def test_split_datalist_rejects_missing_key():
    datalist = DATALIST + [{"image": "e.nii.gz", "label": 1}]

    with pytest.raises(MissingFieldError, match=re.escape("Datalist entry 4: The forget rule reads field 'site'")):
        split_datalist(datalist, "site == 'B'")


def test_split_datalist_allow_missing_keys_retains():
    datalist = DATALIST + [{"image": "e.nii.gz", "label": 1}]

    forget, retain = split_datalist(datalist, "site == 'B'", allow_missing_keys=True)

    assert [entry["image"] for entry in forget] == ["b.nii.gz", "d.nii.gz"], f"forget split {forget}"
    assert "e.nii.gz" in [entry["image"] for entry in retain], "an entry without the field must be retained"


def test_split_datalist_counts_missing_in_empty_error():
    datalist = [{"image": "a.nii.gz"}, {"image": "b.nii.gz", "site": "A"}]

    with pytest.raises(ValueError, match=re.escape("(1 entries lack the fields ['site'])")):
        split_datalist(datalist, "site == 'B'", allow_missing_keys=True)
