# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""The cache of retrain oracles: one folder per combination of config, forget set, retain set and seed.

A retrain oracle costs as much as the original training, so it is trained once and reused. Its cache key is the
SHA-256 of four inputs:

- ``config_sha256``: the digest of the merged bundle config (the training recipe with the oracle overlay and every
  override, see :func:`~monai_unlearn.audit.config_digest`);
- ``forget``: the forget manifest, i.e. the count and the sorted salted hashes of the forgotten case IDs;
- ``retain``: the count and a digest of the salted hashes of the retained case IDs, so that new training data also
  invalidates the oracle;
- ``seed``: the training seed.

An entry folder contains the oracle's ``models/`` (weights and training record), the bundle CLI's log and
``oracle_key.json``, written last: it records the key inputs, the digest and the checkpoint's SHA-256. An entry counts
as cached only when its key file matches the requested key and the checkpoint still has that SHA-256; anything else
(a changed input, an interrupted training, a modified checkpoint) makes the next request retrain.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from monai_unlearn.audit.bundle_config import config_digest
from monai_unlearn.utils import atomic_write_json, sha256_file

__all__ = ["KEY_FILE", "OracleKey", "OracleCache"]

logger = logging.getLogger(__name__)

#: Name of the key file of a cache entry.
KEY_FILE = "oracle_key.json"


@dataclass(frozen=True)
class OracleKey:
    """The inputs that determine a retrain oracle.

    Attributes:
        config_sha256: digest of the merged bundle config.
        forget: ``{"samples", "cases", "case_hashes"}`` of the forget set (salted hashes, sorted).
        retain: ``{"samples", "cases", "digest"}`` of the retain set.
        seed: the training seed.
    """

    config_sha256: str
    forget: Mapping[str, Any]
    retain: Mapping[str, Any]
    seed: int

    def inputs(self) -> dict[str, Any]:
        """Return the key inputs as plain values."""
        return {key: (dict(value) if isinstance(value, Mapping) else value) for key, value in asdict(self).items()}

    @property
    def digest(self) -> str:
        """SHA-256 of the key inputs' canonical JSON."""
        return config_digest(self.inputs())


class OracleCache:
    """A folder of cached retrain oracles, one entry folder per :class:`OracleKey`.

    Args:
        cache_dir: the cache folder; created when an entry is written.
        checkpoint_name: file name of the oracle's weights inside an entry's ``models/`` folder.
    """

    def __init__(self, cache_dir: str | os.PathLike, checkpoint_name: str = "model.pt") -> None:
        self.cache_dir = Path(cache_dir)
        self.checkpoint_name = checkpoint_name

    def entry_dir(self, key: OracleKey) -> Path:
        """Return the entry folder of ``key``: the first 24 hexadecimal characters of its digest."""
        return self.cache_dir / key.digest[:24]

    def checkpoint_path(self, key: OracleKey) -> Path:
        """Return where the oracle's weights of ``key`` are (or will be)."""
        return self.entry_dir(key) / "models" / self.checkpoint_name

    def lookup(self, key: OracleKey) -> dict[str, Any] | None:
        """Return the key record of a valid cached oracle for ``key``, or None when it must be trained."""
        key_file = self.entry_dir(key) / KEY_FILE
        if not key_file.is_file():
            return None
        try:
            record = json.loads(key_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            logger.warning(
                "Ignoring the unreadable oracle key file %s (%s); the oracle will be retrained.", key_file, error
            )
            return None
        if record.get("digest") != key.digest or record.get("inputs") != key.inputs():
            logger.info(
                "The oracle cache entry %s was made for other inputs; the oracle will be retrained.", key_file.parent
            )
            return None
        checkpoint = self.checkpoint_path(key)
        if not checkpoint.is_file() or sha256_file(checkpoint) != record.get("checkpoint_sha256"):
            logger.warning("The cached oracle %s is missing or was modified; the oracle will be retrained.", checkpoint)
            return None
        return record

    def commit(self, key: OracleKey, details: Mapping[str, Any]) -> dict[str, Any]:
        """Write the key file of a freshly trained oracle and return the record written.

        Raises:
            FileNotFoundError: when the oracle's checkpoint is missing.
        """
        checkpoint = self.checkpoint_path(key)
        if not checkpoint.is_file():
            raise FileNotFoundError(
                f"The oracle training finished without writing {str(checkpoint)!r}; check that the bundle saves its "
                f"weights as '{self.checkpoint_name}' under ckpt_dir (see the training log in {checkpoint.parents[1]})."
            )
        record = {
            "digest": key.digest,
            "inputs": key.inputs(),
            "checkpoint": str(checkpoint.relative_to(self.entry_dir(key))),
            "checkpoint_sha256": sha256_file(checkpoint),
            **dict(details),
        }
        atomic_write_json(self.entry_dir(key) / KEY_FILE, record)
        return record

    def invalidate(self, key: OracleKey) -> None:
        """Remove the key file of ``key``'s entry, so that the next request retrains it."""
        key_file = self.entry_dir(key) / KEY_FILE
        if key_file.exists():
            key_file.unlink()

    @contextlib.contextmanager
    def lock(self, key: OracleKey) -> Iterator[None]:
        """Hold an exclusive lock on ``key``'s entry, so that two processes never train the same oracle at once.

        Note:
            The lock uses ``fcntl.flock`` and is a no-op where ``fcntl`` does not exist (Windows).
        """
        entry = self.entry_dir(key)
        entry.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:
            yield
            return
        with open(entry / ".lock", "w", encoding="ascii") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
