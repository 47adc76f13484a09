"""Audit helpers: salted case-ID hashes, the forget manifest, redaction, and the merged config of a bundle command.

Budget: under 1 s (no network, no data loading beyond a few dictionaries).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import stat
from pathlib import Path

import pytest

from conftest import MODALITY_BUNDLE
from monai_unlearn.audit import (
    IdentifierRedactor,
    bundle_cli_arguments,
    bundle_cli_config,
    config_digest,
    forget_manifest,
    merge_bundle_config,
    read_salt,
    salted_hash,
)

SALT = b"0123456789abcdef0123"
DATALIST = [
    {"case_id": "patient-7", "label": 1},
    {"case_id": "patient-7", "label": 1},
    {"case_id": "patient-12", "label": 0},
    {"case_id": "patient-3", "label": 2},
]
BUNDLE_MAIN = "/venv/lib/python3.11/site-packages/monai/bundle/__main__.py"


def test_salted_hash_is_hmac_sha256():
    expected = hmac.new(SALT, b"patient-7", hashlib.sha256).hexdigest()
    assert salted_hash(" patient-7 ", SALT) == expected, "IDs are stripped, then hashed with HMAC-SHA256"


def test_forget_manifest_counts_samples_and_cases():
    manifest = forget_manifest(DATALIST, "label in {1}", SALT)
    assert manifest["forget_samples"] == 2, f"two samples of patient-7 are forgotten: {manifest}"
    assert manifest["forget_cases"] == 1, f"they belong to one case: {manifest}"
    assert manifest["forget_case_hashes"] == [salted_hash("patient-7", SALT)], "the forgotten case's hash"
    assert manifest["retain_cases"] == 2, f"two cases are retained: {manifest}"


def test_forget_manifest_retain_digest_tracks_data():
    grown = [*DATALIST, {"case_id": "patient-99", "label": 0}]
    before = forget_manifest(DATALIST, "label in {1}", SALT)["retain_digest"]
    after = forget_manifest(grown, "label in {1}", SALT)["retain_digest"]
    assert before != after, "adding a retained case must change the retain digest"


def test_forget_manifest_without_id_field_raises():
    with pytest.raises(KeyError, match="no 'subject' field"):
        forget_manifest(DATALIST, "label in {1}", SALT, id_key="subject")


def test_redactor_replaces_whole_identifiers():
    redactor = IdentifierRedactor(["12", "patient-7"], SALT)
    text = redactor.redact_text("ids: patient-7, 12; file 00012.png")
    assert "patient-7" not in text, f"the ID patient-7 stayed in clear: {text}"
    assert f"<id:{salted_hash('12', SALT)[:12]}>" in text, f"the ID 12 should become its hash: {text}"
    assert "00012.png" in text, f"12 inside 00012 is not the ID 12 and must stay: {text}"


def test_redactor_walks_nested_content():
    redactor = IdentifierRedactor(["patient-7"], SALT)
    redacted = redactor.redact({"rule": ["patient-7", 3], "patient-7": {"note": "see patient-7"}})
    assert "patient-7" not in json.dumps(redacted), f"an ID survived in nested content: {redacted}"
    assert redacted["rule"][1] == 3, "non-text values must stay as they are"


def test_read_salt_creates_private_file(tmp_path):
    path = tmp_path / "secrets" / "salt.txt"
    salt = read_salt(salt_file=path, create=True)
    assert len(salt) == 64, f"a created salt is 32 random bytes in hexadecimal, got {len(salt)} characters"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, "only the owner may read the salt file"
    assert read_salt(salt_file=path) == salt, "the salt must be read back unchanged"


def test_read_salt_rejects_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="Salt file .* not found"):
        read_salt(salt_file=tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="has 4 bytes; use at least 16"):
        read_salt(salt="abcd")


def test_merge_matches_bundle_merge_and_overrides():
    merged = merge_bundle_config(
        ["configs/train.json", "configs/unlearn.json"], {"unlearn#passes": 5}, base_dir=MODALITY_BUNDLE
    )
    assert merged["unlearn"]["passes"] == 5, "an override must replace the nested value"
    assert merged["train"]["trainer"]["_target_"] == "monai_unlearn.engines.UnlearningTrainer", "later files win"
    assert merged["train"]["deterministic_transforms"][-1]["_target_"] == "monai_unlearn.transforms.TagForgetd", (
        "a '+' key of a later file appends to the list"
    )


def test_config_digest_ignores_key_order():
    assert config_digest({"a": 1, "b": [1, 2]}) == config_digest({"b": [1, 2], "a": 1}), "key order must not matter"
    assert config_digest({"a": 1}) != config_digest({"a": 2}), "a changed value must change the digest"


def test_bundle_cli_arguments_parse_like_fire():
    argv = [BUNDLE_MAIN, "run", "--config_file", "['a.json','b.json']", "--unlearn#passes", "4"]
    argv.append("--forget_rule=label in {1}")
    arguments = bundle_cli_arguments(argv)
    assert arguments["config_file"] == ["a.json", "b.json"], f"the list must be parsed: {arguments}"
    assert arguments["unlearn#passes"] == 4, f"numbers must be parsed: {arguments}"
    assert arguments["forget_rule"] == "label in {1}", f"text must stay text: {arguments}"
    assert bundle_cli_arguments(["pytest", "tests"]) is None, "a process other than the bundle CLI has no arguments"


def test_bundle_cli_config_records_files_and_overrides():
    files = "['configs/train.json','configs/unlearn.json']"
    argv = [BUNDLE_MAIN, "run", "--config_file", files, "--unlearn#passes", "3"]
    described = bundle_cli_config(argv, base_dir=MODALITY_BUNDLE)
    recorded = [entry["path"] for entry in described["config_files"]]
    assert recorded == ["configs/train.json", "configs/unlearn.json"], f"config files: {recorded}"
    train_digest = hashlib.sha256(Path(MODALITY_BUNDLE, "configs/train.json").read_bytes()).hexdigest()
    assert described["config_files"][0]["sha256"] == train_digest, "each file's SHA-256 must be recorded"
    assert described["overrides"] == {"unlearn#passes": 3}, f"overrides: {described['overrides']}"
    assert described["config"]["unlearn"]["passes"] == 3, "the merged config must include the overrides"
    assert described["config_sha256"] == config_digest(described["config"]), "the digest is that of the merged config"
