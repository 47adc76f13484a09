# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Salted hashes of case identifiers, the forget manifest, and redaction of identifiers in recorded text.

Reports, audit manifests and oracle cache keys must record which cases were forgotten without naming them. They record
``HMAC-SHA256(salt, case_id)`` instead of the case ID. The same salt always gives the same hash, so a later audit
can check whether a given case was forgotten by hashing its ID with the same salt. Without the salt, guessed IDs
cannot be tested against the hashes. The salt is a secret: it comes from a file or an argument, and it is never
logged or written beside the hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from monai_unlearn.transforms import ForgetRule, MissingFieldError, as_rule

__all__ = [
    "MIN_SALT_BYTES",
    "read_salt",
    "salted_hash",
    "salted_hashes",
    "forget_manifest",
    "IdentifierRedactor",
]

logger = logging.getLogger(__name__)

#: Shortest accepted salt, in bytes. 16 random bytes make a dictionary of guessed IDs useless without the salt.
MIN_SALT_BYTES = 16


def read_salt(
    salt: str | bytes | None = None, salt_file: str | os.PathLike | None = None, create: bool = False
) -> bytes:
    """Return the salt given directly, or read from ``salt_file``.

    Args:
        salt: the salt itself (text or bytes). Takes precedence over ``salt_file``.
        salt_file: a file whose content (surrounding whitespace stripped) is the salt.
        create: when ``salt_file`` does not exist, write 32 random bytes (as 64 hexadecimal characters) to it with
            owner-only permissions and use them. The file's path is logged, never its content.

    Raises:
        ValueError: when neither argument is given, or the salt is shorter than :data:`MIN_SALT_BYTES` bytes.
        FileNotFoundError: when ``salt_file`` does not exist and ``create`` is False.
    """
    if salt is not None:
        value = salt.encode("utf-8") if isinstance(salt, str) else bytes(salt)
        source = "the salt argument"
    elif salt_file is not None:
        path = Path(salt_file)
        if not path.is_file():
            if not create:
                raise FileNotFoundError(
                    f"Salt file {str(path)!r} not found. Create it with a secret of at least {MIN_SALT_BYTES} bytes "
                    "(for example: python -c \"import secrets; print(secrets.token_hex(32))\" > FILE), or allow "
                    "creating it."
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(secrets.token_hex(32) + "\n")
            logger.info("Created a new random salt file %s; keep it secret and reuse it for later audits.", path)
        value = path.read_bytes().strip()
        source = f"salt file {str(path)!r}"
    else:
        raise ValueError(
            "No salt given: pass salt=... or salt_file=... (a file holding a secret of at least 16 bytes)."
        )
    if len(value) < MIN_SALT_BYTES:
        raise ValueError(
            f"The salt from {source} has {len(value)} bytes; use at least {MIN_SALT_BYTES} random bytes so that "
            "hashed case IDs cannot be matched against guessed IDs."
        )
    return value


def salted_hash(identifier: Any, salt: bytes) -> str:
    """Return ``HMAC-SHA256(salt, str(identifier).strip())`` as 64 hexadecimal characters."""
    return hmac.new(salt, str(identifier).strip().encode("utf-8"), hashlib.sha256).hexdigest()


def salted_hashes(identifiers: Iterable[Any], salt: bytes) -> list[str]:
    """Return the sorted, de-duplicated salted hashes of ``identifiers``."""
    return sorted({salted_hash(identifier, salt) for identifier in identifiers})


def _case_ids(entries: Sequence[Mapping[str, Any]], id_key: str, side: str) -> list[str]:
    ids = []
    for index, entry in enumerate(entries):
        if id_key not in entry:
            raise KeyError(
                f"The {side} entry {index} has no {id_key!r} field (fields: {sorted(entry)[:12]}); set id_key to the "
                "datalist field that identifies the case or patient."
            )
        ids.append(str(entry[id_key]).strip())
    return ids


def forget_manifest(
    datalist: Sequence[Mapping[str, Any]],
    rule: ForgetRule | str,
    salt: bytes,
    id_key: str = "case_id",
    allow_missing_keys: bool = False,
) -> dict[str, Any]:
    """Apply ``rule`` to a datalist and describe its forget and retain sets without clear-text identifiers.

    Args:
        datalist: the training datalist (a list of sample dictionaries).
        rule: the forget rule or its expression.
        salt: the secret salt (see :func:`read_salt`).
        id_key: the field that identifies a case (several samples, such as slices, may share one case).
        allow_missing_keys: retain entries that lack a field the rule reads instead of raising.

    Returns:
        A dictionary with ``rule``, ``id_key``, ``forget_samples``, ``forget_cases``, ``retain_samples``,
        ``retain_cases``, ``forget_case_hashes`` (the sorted salted hashes of the forgotten case IDs) and
        ``retain_digest`` (SHA-256 over the sorted salted hashes of the retained case IDs, so it changes whenever the
        retain set changes). A case with samples on both sides is counted on both sides. ``rule`` is the rule's
        description: a ``CaseIdIn`` rule gives only its count, but a rule such as ``case_id in {...}`` lists the IDs,
        so pass the manifest through an :class:`IdentifierRedactor` before writing it.

    Raises:
        KeyError: when an entry has no ``id_key`` field, or lacks a rule field and ``allow_missing_keys`` is False.
    """
    rule = as_rule(rule)
    forget, retain = [], []
    for index, entry in enumerate(datalist):
        try:
            selected = rule.matches(entry)
        except MissingFieldError as error:
            if not allow_missing_keys:
                raise MissingFieldError(f"Datalist entry {index}: {error}") from error
            selected = False
        (forget if selected else retain).append(entry)
    forget_hashes = salted_hashes(_case_ids(forget, id_key, "forget"), salt)
    retain_hashes = salted_hashes(_case_ids(retain, id_key, "retain"), salt)
    return {
        "rule": rule.describe(),
        "id_key": id_key,
        "hash": "HMAC-SHA256(salt, case ID)",
        "forget_samples": len(forget),
        "forget_cases": len(forget_hashes),
        "retain_samples": len(retain),
        "retain_cases": len(retain_hashes),
        "forget_case_hashes": forget_hashes,
        "retain_digest": hashlib.sha256("\n".join(retain_hashes).encode("ascii")).hexdigest(),
    }


class IdentifierRedactor:
    """Replace known case identifiers in strings (and nested lists and dicts) by their salted hashes.

    Configs and command lines can name case IDs, for example an inline ``CaseIdIn`` list. Before such content goes
    into a manifest, every occurrence of a known ID is replaced by ``<id:HASH12>``, the first 12 hexadecimal
    characters of its salted hash. An occurrence must not touch a letter or digit on either side, so the ID ``12`` is
    replaced in ``case 12.png`` but not in ``00012``. Longer IDs are matched first, so an ID that contains another is
    replaced whole.

    Args:
        identifiers: the IDs to hide (typically every case ID of the datalist).
        salt: the secret salt.
    """

    def __init__(self, identifiers: Iterable[Any], salt: bytes) -> None:
        unique = sorted({str(i).strip() for i in identifiers if str(i).strip()}, key=lambda text: (-len(text), text))
        self.salt = salt
        alternatives = "|".join(re.escape(text) for text in unique)
        self._pattern = re.compile(f"(?<![0-9A-Za-z])(?:{alternatives})(?![0-9A-Za-z])") if unique else None

    def redact_text(self, text: str) -> str:
        """Return ``text`` with every known identifier replaced by ``<id:HASH12>``."""
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda match: f"<id:{salted_hash(match.group(0), self.salt)[:12]}>", text)

    def redact(self, value: Any) -> Any:
        """Return a copy of ``value`` with identifiers redacted in every string, key and nested container."""
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, Mapping):
            return {self.redact(key) if isinstance(key, str) else key: self.redact(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.redact(item) for item in value]
        return value
