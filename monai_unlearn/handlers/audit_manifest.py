# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Handler that writes the audit manifest of a revision: what was forgotten, from which model, under which config.

The manifest is the record a data-protection officer keeps: the forget rule, the forget and retain counts, the salted
hashes of the forgotten case IDs, the SHA-256 of the checkpoints before and after (from
:class:`~monai_unlearn.handlers.RevisionSaver`), the method and its settings, the merged bundle config and the
package versions. No case ID appears in clear: IDs are hashed with a secret salt (see
:mod:`monai_unlearn.audit.identifiers`), and every known ID inside the recorded config and rule is replaced by its
hash.
"""

from __future__ import annotations

import datetime
import logging
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

from monai_unlearn.audit.bundle_config import bundle_cli_config, config_digest
from monai_unlearn.audit.identifiers import IdentifierRedactor, forget_manifest, read_salt
from monai_unlearn.transforms import ForgetRule, as_rule
from monai_unlearn.utils import atomic_write_json

__all__ = ["AuditManifest", "REDACTOR_ATTRIBUTE", "package_versions"]

#: Attribute of ``engine.state`` holding the :class:`~monai_unlearn.audit.IdentifierRedactor` that the report applies.
REDACTOR_ATTRIBUTE = "identifier_redactor"


def package_versions() -> dict[str, str]:
    """Return the versions of the packages that determine a revision's result, and of Python and the platform."""
    import ignite
    import monai
    import numpy
    import sklearn

    import monai_unlearn

    return {
        "monai_unlearn": monai_unlearn.__version__,
        "monai": monai.__version__,
        "torch": torch.__version__,
        "pytorch-ignite": ignite.__version__,
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


class AuditManifest:
    """Write ``<output_dir>/<manifest_name>.json`` when the revision completes.

    Attach it after :class:`~monai_unlearn.handlers.RevisionSaver`, so that the revised checkpoint's digest exists,
    and before :class:`~monai_unlearn.handlers.UnlearningReport`, which then redacts case IDs from its rule description
    with the same salt and names the manifest.

    Args:
        output_dir: folder of the manifest; created if needed.
        forget_rule: the forget rule or its expression.
        datalist: the training datalist the rule applies to (for the counts and hashes).
        salt: the secret salt itself. Never logged or written.
        salt_file: a file holding the salt (used when ``salt`` is None). Never logged or written, only its path is.
        create_salt: create ``salt_file`` with a random salt when it does not exist.
        id_key: the datalist field that identifies a case.
        config: the config to record: ``"auto"`` (default) reads the config files and overrides of the running
            ``python -m monai.bundle run`` command, a dict records that content, None records none.
        allow_missing_keys: retain datalist entries that lack a field the rule reads (as ``TagForgetd`` does).
        manifest_name: stem of the manifest file.
        name: name of the handler's logger.

    Raises:
        ValueError: at construction, when no salt is given or it is too short.
        FileNotFoundError: at construction, when ``salt_file`` does not exist and ``create_salt`` is False.
        KeyError: at construction, when datalist entries lack ``id_key`` or a field of the rule.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        forget_rule: ForgetRule | str,
        datalist: Sequence[Mapping[str, Any]],
        salt: str | bytes | None = None,
        salt_file: str | os.PathLike | None = None,
        create_salt: bool = False,
        id_key: str = "case_id",
        config: str | Mapping[str, Any] | None = "auto",
        allow_missing_keys: bool = False,
        manifest_name: str = "audit_manifest",
        name: str = "AuditManifest",
    ) -> None:
        self.output_dir = Path(output_dir)
        self.rule = as_rule(forget_rule)
        self._salt = read_salt(salt, salt_file, create=create_salt)
        self.salt_source = "argument" if salt is not None else f"file {Path(salt_file).name}"  # type: ignore[arg-type]
        self.id_key = id_key
        self.manifest = forget_manifest(datalist, self.rule, self._salt, id_key, allow_missing_keys)
        self.redactor = IdentifierRedactor((entry[id_key] for entry in datalist), self._salt)
        self.config = config
        self.manifest_name = manifest_name
        self.logger = logging.getLogger(name)
        self.path: Path | None = None

    def __repr__(self) -> str:  # keeps the salt out of any repr a log might print
        rule = self.redactor.redact_text(self.rule.describe())
        return f"AuditManifest(output_dir={str(self.output_dir)!r}, rule={rule!r})"

    def attach(self, engine: Engine) -> None:
        """Publish the identifier redactor at STARTED and write the manifest at COMPLETED."""
        engine.add_event_handler(Events.STARTED, self.publish_redactor)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def publish_redactor(self, engine: Engine) -> None:
        """Put the redactor on ``engine.state`` so that the report hides case IDs with the same salt."""
        setattr(engine.state, REDACTOR_ATTRIBUTE, self.redactor)

    def _config(self) -> dict[str, Any] | None:
        if self.config is None:
            return None
        if isinstance(self.config, Mapping):
            content = dict(self.config)
            return {"config": content, "config_sha256": config_digest(content)}
        if self.config == "auto":
            described = bundle_cli_config()
            if described is None:
                self.logger.info("Not running under the bundle CLI; the audit manifest records no config.")
            return described
        raise ValueError(f"Invalid config {self.config!r}: expected 'auto', a dict or None.")

    def build(self, engine: Engine | None = None) -> dict[str, Any]:
        """Return the manifest's content, with every known case ID redacted."""
        state = engine.state if engine is not None else None
        method = getattr(engine, "method", None)
        history = list(getattr(engine, "history", []))
        manifest = {
            "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "forget_rule": self.rule.describe(),
            "forget_set": {key: value for key, value in self.manifest.items() if key != "rule"},
            "salt_source": self.salt_source,
            "checkpoints": getattr(state, "revision", None),
            "method": method.config() if method is not None else None,
            "seed": getattr(engine, "seed", None),
            "passes": len(history),
            "device": str(getattr(state, "device", "")) if state is not None else None,
            "bundle_config": self._config(),
            "versions": package_versions(),
        }
        return self.redactor.redact(manifest)

    def write(self, engine: Engine | None = None) -> Path:
        """Write the manifest atomically and return its path."""
        manifest = self.build(engine)
        self.path = atomic_write_json(self.output_dir / f"{self.manifest_name}.json", manifest)
        if engine is not None:
            engine.state.unlearning_audit = {
                "path": str(self.path),
                "forget_cases": self.manifest["forget_cases"],
                "forget_samples": self.manifest["forget_samples"],
            }
        self.logger.info(
            "Wrote the audit manifest %s: %d forget cases (%d samples), %d retain cases.",
            self.path,
            self.manifest["forget_cases"],
            self.manifest["forget_samples"],
            self.manifest["retain_cases"],
        )
        return self.path
