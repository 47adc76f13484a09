# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Bundle metadata after a revision: version bump, changelog entry and schema check.

This module sits at the end of the flow: when a revision completes, the
:class:`~monai_unlearn.handlers.BundleMetadataUpdater` handler calls :func:`record_revision`, which bumps the
version in ``configs/metadata.json`` (patch by default, ``0.1.0`` -> ``0.1.1``; minor on request, ``0.1.0`` ->
``0.2.0``) and adds a changelog entry that describes the revision: the forget rule (identifiers replaced by a
count), the forget and retain counts, the method and its settings, the metrics of the report when there is one, and
the SHA-256 digests of the original and revised weights. The file is rewritten atomically.

:func:`verify_bundle_metadata` runs MONAI's own ``verify_metadata`` against a local JSON schema, because the model
zoo's schema URL cannot be downloaded offline. The shipped schema (``schemas/bundle_metadata_schema.json``) requires
the fields of the MONAI Bundle Specification that the model zoo checks.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai_unlearn.transforms import FieldEquals, FieldIn, FieldMatches, ForgetRule, as_rule
from monai_unlearn.transforms.rules import IDENTIFYING_FIELD, AllOf, Not
from monai_unlearn.utils import atomic_write_text, sha256_file

__all__ = [
    "DEFAULT_METADATA_SCHEMA",
    "bump_version",
    "describe_rule_for_record",
    "format_changelog_entry",
    "record_revision",
    "verify_bundle_metadata",
]

#: JSON schema shipped with the package for offline ``verify_metadata`` runs.
DEFAULT_METADATA_SCHEMA = Path(__file__).resolve().parent / "schemas" / "bundle_metadata_schema.json"

_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
_IDENTIFYING_FIELD = IDENTIFYING_FIELD
# Metrics copied from the report into the changelog, in this order.
_RECORDED_METRICS = ("forget_accuracy", "retain_accuracy", "accuracy", "forget_dice", "retain_dice", "dice")


def bump_version(version: str, part: str = "patch") -> str:
    """Return ``version`` (``MAJOR.MINOR.PATCH``) with its patch or minor number increased.

    Raises:
        ValueError: when ``version`` is not three dot-separated numbers or ``part`` is not ``"patch"``/``"minor"``.
    """
    match = _SEMVER.match(str(version).strip())
    if match is None:
        raise ValueError(
            f"Bundle version {version!r} is not of the form MAJOR.MINOR.PATCH (for example 0.1.0), so it cannot be "
            "bumped. Fix the version in configs/metadata.json, or pass the new version explicitly (--new-version)."
        )
    major, minor, patch = (int(g) for g in match.groups())
    if part == "patch":
        return f"{major}.{minor}.{patch + 1}"
    if part == "minor":
        return f"{major}.{minor + 1}.0"
    raise ValueError(f"Invalid version part {part!r}: expected 'patch' or 'minor'.")


def _version_key(version: str) -> tuple[int, ...]:
    match = _SEMVER.match(version)
    return tuple(int(g) for g in match.groups()) if match else (-1,)


def describe_rule_for_record(rule: ForgetRule | str) -> str:
    """Describe a forget rule for a changelog: values of identifying fields are replaced by their count.

    ``case_id in {'p001', 'p002'}`` becomes ``case_id in <2 values>``; ``label in {1}`` and
    ``Manufacturer == 'SIEMENS'`` are kept, since class labels and vendors identify no person.
    """
    rule = as_rule(rule)
    if isinstance(rule, (FieldIn, FieldEquals, FieldMatches)) and _IDENTIFYING_FIELD.search(rule.key):
        count = len(rule.values) if isinstance(rule, FieldIn) else 1
        return f"{rule.key} {'matches' if isinstance(rule, FieldMatches) else 'in'} <{count} value(s)>"
    if isinstance(rule, AllOf):  # AnyOf derives from AllOf
        joiner = " or " if type(rule).__name__ == "AnyOf" else " and "
        return "(" + joiner.join(describe_rule_for_record(r) for r in rule.rules) + ")"
    if isinstance(rule, Not):
        return f"not {describe_rule_for_record(rule.rule)}"
    return rule.describe()


def _format_number(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _metric_changes(report: Mapping[str, Any] | None) -> list[str]:
    if not report:
        return []
    changes = []
    for split, values in (report.get("splits") or {}).items():
        before, after = values.get("before") or {}, values.get("after") or {}
        parts = [
            f"{key} {_format_number(before[key])} -> {_format_number(after[key])}"
            for key in _RECORDED_METRICS
            if before.get(key) is not None and after.get(key) is not None
        ]
        if parts:
            changes.append(f"{split}: " + ", ".join(parts))
    return changes


def format_changelog_entry(
    rule: ForgetRule | str | None,
    method: Mapping[str, Any] | None,
    passes: int | None,
    forget_count: int | None,
    retain_count: int | None,
    revision: Mapping[str, Any] | None = None,
    report: Mapping[str, Any] | None = None,
    learning_rate: float | None = None,
    seed: int | None = None,
) -> str:
    """Return the changelog text of a revision (one line; no identifiers in clear).

    Args:
        rule: the forget rule, or None when it is not known (a hand-written overlay that defines it elsewhere).
        method: the method's settings, as returned by ``UnlearningMethod.config()``.
        passes: passes over the forget set.
        forget_count, retain_count: training samples forgotten and retained.
        revision: ``engine.state.revision`` from :class:`~monai_unlearn.handlers.RevisionSaver` (digests, backup).
        report: the unlearning report dictionary, whose before/after metrics are summarised.
        learning_rate: the revision's learning rate, when the overlay set one.
        seed: the revision's seed.
    """
    import monai_unlearn

    method = dict(method or {})
    name = method.pop("preset", None) or method.pop("name", None) or "unknown method"
    method.pop("name", None)
    settings = [f"{k}={v}" for k, v in method.items() if k in ("epsilon", "steps", "retain_weight", "noise_scale")]
    if passes is not None:
        settings.append(f"passes={passes}")
    if learning_rate is not None:
        settings.append(f"lr={learning_rate}")
    if seed is not None:
        settings.append(f"seed={seed}")
    text = f"unlearning revision (monai_unlearn {monai_unlearn.__version__}): forgot the training samples "
    text += "selected by the overlay's forget rule" if rule is None else f"matching `{describe_rule_for_record(rule)}`"
    if forget_count is not None and retain_count is not None:
        text += f" ({forget_count} forgotten, {retain_count} retained)"
    text += f"; method {name} ({', '.join(settings)})"
    changes = _metric_changes(report)
    if changes:
        text += "; " + "; ".join(changes)
    revision = revision or {}
    if revision.get("original_sha256"):
        backup = Path(str(revision.get("original_backup", ""))).name
        text += f"; original weights sha256 {revision['original_sha256']} kept as models/{backup}"
    if revision.get("revised_sha256"):
        text += f"; revised weights sha256 {revision['revised_sha256']}"
    return text


def record_revision(
    metadata_file: str | os.PathLike,
    entry: str,
    version_bump: str = "patch",
    new_version: str | None = None,
) -> str:
    """Bump the version of ``metadata_file``, put ``entry`` first in its changelog, write it atomically.

    Returns:
        the new version.

    Raises:
        FileNotFoundError: when the metadata file does not exist.
        ValueError: when it is not a JSON object, its version cannot be bumped, or ``new_version`` is not newer
            than the current version.
    """
    path = Path(metadata_file)
    if not path.is_file():
        raise FileNotFoundError(f"Bundle metadata {str(path)!r} not found; pass the bundle's configs/metadata.json.")
    try:
        original_text = path.read_text(encoding="utf-8")
        metadata = json.loads(original_text)
    except json.JSONDecodeError as error:
        raise ValueError(f"Bundle metadata {str(path)!r} is not valid JSON ({error}); fix the file.") from error
    if not isinstance(metadata, dict):
        raise ValueError(f"Bundle metadata {str(path)!r} must be a JSON object, got {type(metadata).__name__}.")
    current = str(metadata.get("version", ""))
    if new_version is None:
        version = bump_version(current, version_bump)
    else:
        version = str(new_version).strip()
        if _SEMVER.match(version) is None or (_SEMVER.match(current) and _version_key(version) <= _version_key(current)):
            raise ValueError(
                f"New version {new_version!r} must be of the form MAJOR.MINOR.PATCH and newer than {current!r}."
            )
    changelog = metadata.get("changelog") or {}
    if not isinstance(changelog, dict):
        raise ValueError(f"The changelog of {str(path)!r} must be a JSON object of version -> text.")
    if version in changelog:
        raise ValueError(f"The changelog of {str(path)!r} already has an entry for version {version!r}.")
    updated = {}
    for key, value in metadata.items():
        if key == "version":
            updated[key] = version
        elif key == "changelog":
            updated[key] = {version: entry, **changelog}
        else:
            updated[key] = value
    updated.setdefault("version", version)
    updated.setdefault("changelog", {version: entry})
    # Keep the file's own indentation, so that the bundle's version control shows only the changed lines.
    atomic_write_text(path, json.dumps(updated, indent=_json_indent(original_text), default=str) + "\n")
    return version


def _json_indent(text: str) -> int:
    """Return the indentation width of the first indented line of a JSON text, 2 when no line is indented."""
    for line in text.splitlines():
        stripped = line.lstrip(" ")
        if stripped and len(stripped) < len(line):
            return len(line) - len(stripped)
    return 2


def verify_bundle_metadata(
    meta_file: str | os.PathLike | Sequence[str | os.PathLike], schema_file: str | os.PathLike | None = None
) -> None:
    """Run ``monai.bundle.verify_metadata`` against a local schema file (no download).

    MONAI downloads the schema named by the metadata's ``schema`` URL only when ``filepath`` does not exist, so
    passing an existing schema file checks offline. The changelog must also have an entry for the current version.

    Raises:
        FileNotFoundError: when the schema file does not exist.
        ValueError: when the metadata fails the schema (MONAI's message) or lacks a changelog entry for its version.
    """
    from monai.bundle import verify_metadata

    schema = Path(schema_file) if schema_file is not None else DEFAULT_METADATA_SCHEMA
    if not schema.is_file():
        raise FileNotFoundError(f"Metadata schema {str(schema)!r} not found; pass an existing JSON schema file.")
    files = [str(meta_file)] if isinstance(meta_file, (str, os.PathLike)) else [str(f) for f in meta_file]
    try:
        # The file's own digest: MONAI then uses the local file without downloading or warning about integrity.
        verify_metadata(meta_file=files, filepath=str(schema), hash_val=sha256_file(schema), hash_type="sha256")
    except ValueError as error:
        # MONAI's message omits which field failed; name each failing field.
        import jsonschema

        rules = json.loads(schema.read_text(encoding="utf-8"))
        problems = []
        for file in files:
            instance = json.loads(Path(file).read_text(encoding="utf-8"))
            for problem in jsonschema.Draft7Validator(rules).iter_errors(instance):
                where = "/".join(str(part) for part in problem.path) or "(top level)"
                problems.append(f"{Path(file).name} {where}: {problem.message}")
        raise ValueError(f"{error} {'; '.join(problems[:10])}") from error
    for file in files:
        metadata = json.loads(Path(file).read_text(encoding="utf-8"))
        version = metadata.get("version")
        if version not in (metadata.get("changelog") or {}):
            raise ValueError(f"{file!r}: the changelog has no entry for the current version {version!r}; add one.")
