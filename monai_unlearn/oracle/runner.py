# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Train the retrain oracle of a bundle: its own training recipe on the retain set, through the real bundle CLI.

The oracle overlay (``configs/oracle.json`` in the example bundle) removes the forget set from the training (and
validation) datalist and sends the checkpoints to ``oracle#output_dir``. Everything else is the bundle's
``train.json``. :func:`plan_oracle` computes the cache key without training; :func:`train_oracle` trains the oracle
with ``python -m monai.bundle run`` unless the cache already contains it.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser

from monai_unlearn.audit.bundle_config import config_digest, merge_bundle_config
from monai_unlearn.audit.identifiers import IdentifierRedactor, forget_manifest, read_salt
from monai_unlearn.transforms import as_rule
from monai_unlearn.utils import atomic_write_json

from .cache import OracleCache, OracleKey

_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception): ")

__all__ = [
    "DEFAULT_CONFIG_FILES",
    "DEFAULT_SALT_FILE",
    "OraclePlan",
    "OracleResult",
    "default_cache_dir",
    "plan_oracle",
    "train_oracle",
]

logger = logging.getLogger(__name__)

#: The bundle's training config followed by the oracle overlay, relative to the bundle root.
DEFAULT_CONFIG_FILES = ("configs/train.json", "configs/oracle.json")
#: Salt file of the salted case-ID hashes, relative to the bundle root; the unlearning overlay uses the same one.
DEFAULT_SALT_FILE = "secrets/audit_salt.txt"
#: The overlay key the runner sets to the cache entry, where the bundle writes its checkpoints.
OUTPUT_DIR_KEY = "oracle#output_dir"


def default_cache_dir(bundle_root: str | os.PathLike) -> Path:
    """Return the default oracle cache of a bundle: ``<bundle_root>/models/oracle_cache``."""
    return Path(bundle_root) / "models" / "oracle_cache"


@dataclass
class OraclePlan:
    """What :func:`train_oracle` would do: the key, the entry folder, and whether the cache already contains the oracle.

    Attributes:
        bundle_root: the bundle folder (the bundle CLI's working directory).
        config_files: the config files, relative to ``bundle_root`` or absolute.
        overrides: config overrides of the oracle run (seed, forget rule and the caller's), without the output folder.
        key: the cache key.
        cache: the oracle cache.
        cached: the key record of a valid cached oracle, or None when the oracle must be trained.
        meta_file: the bundle's metadata file.
        logging_file: the bundle's logging config, or None.
        redactor: replaces known case IDs by their salted hashes in what is written.
    """

    bundle_root: Path
    config_files: list[str]
    overrides: dict[str, Any]
    key: OracleKey
    cache: OracleCache
    cached: dict[str, Any] | None
    meta_file: str | None
    logging_file: str | None
    redactor: IdentifierRedactor = field(repr=False)

    @property
    def entry_dir(self) -> Path:
        """The cache entry folder of this oracle."""
        return self.cache.entry_dir(self.key)

    @property
    def checkpoint(self) -> Path:
        """The oracle's weights."""
        return self.cache.checkpoint_path(self.key)

    def command(self, args_file: str | os.PathLike) -> list[str]:
        """Return the bundle CLI command that trains the oracle from ``args_file``."""
        return [sys.executable, "-m", "monai.bundle", "run", "--args_file", str(args_file)]


@dataclass
class OracleResult:
    """A trained or reused retrain oracle.

    Attributes:
        checkpoint: the oracle's weights (load them into the bundle's network definition).
        entry_dir: the cache entry folder.
        key_digest: the cache key's SHA-256.
        reused: True when the cache already held the oracle and nothing was trained.
        record: the entry's key record (inputs, checkpoint SHA-256, run ID, training time).
    """

    checkpoint: Path
    entry_dir: Path
    key_digest: str
    reused: bool
    record: dict[str, Any]


def _resolve(parser: ConfigParser, key: str, description: str) -> Any:
    if key not in parser:
        raise KeyError(
            f"The bundle config has no {key!r} ({description}); set the matching argument to the bundle's key name."
        )
    return parser.get_parsed_content(key)


def plan_oracle(
    bundle_root: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    config_files: Sequence[str] = DEFAULT_CONFIG_FILES,
    forget_rule: str | Mapping[str, Any] | None = None,
    seed: int = 0,
    salt: str | bytes | None = None,
    salt_file: str | os.PathLike | None = None,
    create_salt: bool = True,
    overrides: Mapping[str, Any] | None = None,
    seed_key: str = "determinism_seed",
    rule_key: str = "forget_rule",
    datalist_key: str = "train_datalist",
    id_key: str = "case_id",
    checkpoint_name: str = "model.pt",
    meta_file: str | None = "configs/metadata.json",
    logging_file: str | None = "configs/logging.conf",
) -> OraclePlan:
    """Compute the cache key of a bundle's retrain oracle and look it up, without training anything.

    Args:
        bundle_root: the bundle folder.
        cache_dir: the oracle cache; None uses :func:`default_cache_dir`.
        config_files: the training config and the oracle overlay, merged left to right.
        forget_rule: the forget rule (an expression, or a config dict such as a ``CaseIdIn`` component); None keeps
            the config's ``rule_key`` value.
        seed: the training seed, written to ``seed_key``.
        salt: the secret salt of the case-ID hashes; never logged or written.
        salt_file: a file holding the salt; None uses ``<bundle_root>/secrets/audit_salt.txt``.
        create_salt: create the salt file with a random salt when it does not exist.
        overrides: further config overrides, as on the bundle CLI (``{"num_epochs": 2}``).
        seed_key: the bundle's seed key (``determinism_seed`` in the example bundle).
        rule_key: the config key of the forget rule.
        datalist_key: the config key of the training datalist the rule applies to.
        id_key: the datalist field that identifies a case.
        checkpoint_name: file name of the weights that the bundle writes to its ``ckpt_dir``.
        meta_file: the bundle's metadata file, relative to ``bundle_root``; not part of the key.
        logging_file: the bundle's logging config, relative to ``bundle_root``; not part of the key.

    Returns:
        The :class:`OraclePlan`.

    Raises:
        FileNotFoundError: when a config file or the salt file is missing.
        KeyError: when the config lacks ``seed_key``, ``rule_key`` or ``datalist_key``, or entries lack ``id_key``.
        ValueError: when the rule selects no entry or every entry of the training datalist.
    """
    root = Path(bundle_root).resolve()
    files = [str(name) for name in config_files]
    run_overrides: dict[str, Any] = {seed_key: int(seed)}
    if forget_rule is not None:
        run_overrides[rule_key] = forget_rule
    run_overrides.update(dict(overrides or {}))
    if OUTPUT_DIR_KEY in run_overrides:
        raise ValueError(f"Do not override {OUTPUT_DIR_KEY!r}: the oracle cache sets it to the cache entry.")

    if seed_key not in ConfigParser(config=merge_bundle_config(files, base_dir=root)):
        # An override would add the key silently, and the bundle's recipe would never read it.
        raise KeyError(f"The bundle config has no seed key {seed_key!r}; pass seed_key=<the bundle's seed key>.")
    content = merge_bundle_config(files, run_overrides, base_dir=root)
    digest = config_digest(content)

    parser = ConfigParser(config=content)
    if "bundle_root" in parser:
        # Resolve the datalist as the bundle CLI would from the bundle folder, wherever this process runs.
        parser["bundle_root"] = str(root)
    datalist = _resolve(parser, datalist_key, "the training datalist")
    rule = as_rule(_resolve(parser, rule_key, "the forget rule"))
    secret = read_salt(salt, salt_file if salt_file is not None else root / DEFAULT_SALT_FILE, create=create_salt)
    manifest = forget_manifest(datalist, rule, secret, id_key)

    key = OracleKey(
        config_sha256=digest,
        forget={
            "samples": manifest["forget_samples"],
            "cases": manifest["forget_cases"],
            "case_hashes": manifest["forget_case_hashes"],
        },
        retain={
            "samples": manifest["retain_samples"],
            "cases": manifest["retain_cases"],
            "digest": manifest["retain_digest"],
        },
        seed=int(seed),
    )
    cache = OracleCache(cache_dir if cache_dir is not None else default_cache_dir(root), checkpoint_name)
    return OraclePlan(
        bundle_root=root,
        config_files=files,
        overrides=run_overrides,
        key=key,
        cache=cache,
        cached=cache.lookup(key),
        meta_file=meta_file,
        logging_file=logging_file,
        redactor=IdentifierRedactor((entry[id_key] for entry in datalist), secret),
    )


def _run_bundle(plan: OraclePlan, timeout: float | None, environment: Mapping[str, str] | None) -> tuple[float, str]:
    """Run the bundle CLI for ``plan`` and return its wall time and the path of its log."""
    entry = plan.entry_dir
    shutil.rmtree(entry / "models", ignore_errors=True)
    arguments: dict[str, Any] = {"config_file": plan.config_files, **plan.overrides, OUTPUT_DIR_KEY: str(entry)}
    if plan.meta_file is not None:
        arguments["meta_file"] = plan.meta_file
    if plan.logging_file is not None:
        arguments["logging_file"] = plan.logging_file
    # The arguments go through an args file so that every override keeps its type. The file may name case IDs (for
    # example in an inline CaseIdIn rule), so it is deleted after the run.
    args_file = entry / ".oracle_args.json"
    atomic_write_json(args_file, arguments)
    log_file = entry / "oracle_training.log"
    started = time.perf_counter()
    try:
        result = subprocess.run(
            plan.command(args_file),
            cwd=plan.bundle_root,
            env=dict(environment) if environment is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    finally:
        args_file.unlink(missing_ok=True)
    seconds = time.perf_counter() - started
    output = plan.redactor.redact_text(result.stdout + ("\n" + result.stderr if result.stderr else ""))
    log_file.write_text(output, encoding="utf-8")
    if result.returncode != 0:
        tail = "\n".join(output.splitlines()[-25:])
        # In a chained traceback the first exception line is the root cause; the last is the bundle parser's wrapper.
        causes = [line for line in output.splitlines() if _EXCEPTION_LINE.match(line)]
        cause = f" Cause: {causes[0]}" if causes else ""
        raise RuntimeError(
            f"Training the retrain oracle failed (exit code {result.returncode}); the full log is {log_file}.{cause} "
            f"Last lines:\n{tail}"
        )
    return seconds, str(log_file.name)


def train_oracle(
    bundle_root: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    force: bool = False,
    timeout: float | None = None,
    environment: Mapping[str, str] | None = None,
    **plan_arguments: Any,
) -> OracleResult:
    """Return the retrain oracle of a bundle, training it through the bundle CLI unless the cache contains it.

    Args:
        bundle_root: the bundle folder.
        cache_dir: the oracle cache; None uses :func:`default_cache_dir`.
        force: retrain even when the cache contains a valid oracle.
        timeout: seconds after which the training is stopped and an error raised; None waits.
        environment: environment of the bundle CLI process; None inherits this process's.
        plan_arguments: the arguments of :func:`plan_oracle` (``config_files``, ``forget_rule``, ``seed``, salt,
            ``overrides``, key names, ``meta_file``, ``logging_file``).

    Returns:
        The :class:`OracleResult`.

    Raises:
        RuntimeError: when the bundle CLI fails; the message gives the end of its log and the log's path.
        subprocess.TimeoutExpired: when the training runs past ``timeout``.
        FileNotFoundError, KeyError, ValueError: as :func:`plan_oracle`.
    """
    plan = plan_oracle(bundle_root, cache_dir, **plan_arguments)
    with plan.cache.lock(plan.key):
        cached = None if force else plan.cache.lookup(plan.key)
        if cached is not None:
            logger.info("Reusing the cached retrain oracle %s (key %s).", plan.checkpoint, plan.key.digest[:12])
            return OracleResult(plan.checkpoint, plan.entry_dir, plan.key.digest, True, cached)
        plan.cache.invalidate(plan.key)
        logger.info(
            "Training the retrain oracle in %s: %d retain samples, %d forget cases left out, seed %d.",
            plan.entry_dir,
            plan.key.retain["samples"],
            plan.key.forget["cases"],
            plan.key.seed,
        )
        seconds, log_name = _run_bundle(plan, timeout, environment)
        training_record = plan.entry_dir / "models" / "training_time.json"
        details = {
            "run_id": uuid.uuid4().hex,
            "trained_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command_seconds": seconds,
            "config_files": plan.config_files,
            "overrides": plan.redactor.redact({k: v for k, v in plan.overrides.items()}),
            "log": log_name,
            "training": json.loads(training_record.read_text(encoding="utf-8")) if training_record.is_file() else None,
        }
        record = plan.cache.commit(plan.key, details)
        logger.info("Trained the retrain oracle %s in %.1f s.", plan.checkpoint, seconds)
        return OracleResult(plan.checkpoint, plan.entry_dir, plan.key.digest, False, record)
