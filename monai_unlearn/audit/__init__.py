# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Audit helpers: salted hashes of case IDs, the forget manifest, and the merged config of a bundle run."""

from __future__ import annotations

from .bundle_config import (
    BUNDLE_RUN_ARGUMENTS,
    bundle_cli_arguments,
    bundle_cli_config,
    config_digest,
    merge_bundle_config,
)
from .identifiers import MIN_SALT_BYTES, IdentifierRedactor, forget_manifest, read_salt, salted_hash, salted_hashes

__all__ = [
    "BUNDLE_RUN_ARGUMENTS",
    "MIN_SALT_BYTES",
    "IdentifierRedactor",
    "bundle_cli_arguments",
    "bundle_cli_config",
    "config_digest",
    "forget_manifest",
    "merge_bundle_config",
    "read_salt",
    "salted_hash",
    "salted_hashes",
]
