# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Handler that keeps the original checkpoint and writes the revised weights atomically in its place."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

from monai_unlearn.engines.unlearning_trainer import unwrap_network
from monai_unlearn.utils import atomic_torch_save, load_checkpoint, sha256_file, state_dict_layout

__all__ = ["RevisionSaver", "original_backup_path"]


def original_backup_path(checkpoint_path: str | os.PathLike, digest: str) -> Path:
    """Return the name under which a checkpoint with SHA-256 ``digest`` is kept: ``model.original-<12 hex>.pt``."""
    path = Path(checkpoint_path)
    return path.with_name(f"{path.stem}.original-{digest[:12]}{path.suffix}")


class RevisionSaver:
    """Keep the checkpoint being revised under a name that records its hash, then replace it with the revision.

    At ``Events.STARTED`` the checkpoint is checked (it must load with ``weights_only=True``) and copied to
    :func:`original_backup_path` unless that copy already exists. At ``Events.COMPLETED`` the network's weights are
    written atomically (temporary file, flush, fsync, rename) to ``output_path``, in the layout of the original file
    (a bare state_dict, or a dict with the weights under ``"model"``). A run that fails or is killed leaves the
    original file untouched. The digests and the backup path are stored in ``engine.state.revision``.

    Args:
        checkpoint_path: the bundle's checkpoint, for example ``models/model.pt``.
        output_path: where the revised weights go; None writes them to ``checkpoint_path`` (in-place revision).
        network: the network whose weights are saved; None uses ``engine.network``.
        name: name of the handler's logger.

    Raises:
        FileNotFoundError: at STARTED, when the checkpoint does not exist.
        ValueError: at STARTED, when it is not a weights-only checkpoint.
        OSError: at COMPLETED, when the revised weights cannot be written (a full disk); the checkpoint is unchanged.
    """

    def __init__(
        self,
        checkpoint_path: str | os.PathLike,
        output_path: str | os.PathLike | None = None,
        network: torch.nn.Module | None = None,
        name: str = "RevisionSaver",
    ) -> None:
        self.checkpoint_path = Path(checkpoint_path)
        self.output_path = Path(output_path) if output_path is not None else self.checkpoint_path
        self.network = network
        self.logger = logging.getLogger(name)
        self.original_sha256: str | None = None
        self.backup_path: Path | None = None
        self._layout: str | None = None

    def attach(self, engine: Engine) -> None:
        """Register the backup at STARTED and the atomic save at COMPLETED."""
        engine.add_event_handler(Events.STARTED, self.keep_original)
        engine.add_event_handler(Events.COMPLETED, self.save_revision)

    def keep_original(self, engine: Engine | None = None) -> Path:
        """Check the checkpoint and copy it to its hash-named backup; return the backup path."""
        checkpoint = load_checkpoint(self.checkpoint_path)
        self._layout = state_dict_layout(checkpoint)
        self.original_sha256 = sha256_file(self.checkpoint_path)
        self.backup_path = original_backup_path(self.checkpoint_path, self.original_sha256)
        if not self.backup_path.exists():
            temporary = self.backup_path.with_name(f".{self.backup_path.name}.tmp")
            try:
                shutil.copy2(self.checkpoint_path, temporary)
                with open(temporary, "rb") as handle:
                    os.fsync(handle.fileno())
                os.replace(temporary, self.backup_path)
            except OSError as error:
                temporary.unlink(missing_ok=True)
                raise OSError(
                    error.errno,
                    f"Could not keep a copy of the original checkpoint as {str(self.backup_path)!r} "
                    f"({error.strerror or error}); nothing was changed. Free disk space or make the folder writable.",
                ) from error
            self.logger.info("Kept the original checkpoint as %s.", self.backup_path)
        elif sha256_file(self.backup_path) != self.original_sha256:
            raise ValueError(
                f"{str(self.backup_path)!r} exists but its content differs from {str(self.checkpoint_path)!r}; "
                "move it away before revising again."
            )
        if engine is not None:
            engine.state.revision = {
                "checkpoint": str(self.checkpoint_path),
                "original_sha256": self.original_sha256,
                "original_backup": str(self.backup_path),
            }
        return self.backup_path

    def save_revision(self, engine: Engine) -> Path:
        """Write the revised weights atomically and return their path."""
        if self.original_sha256 is None:
            raise RuntimeError("RevisionSaver.save_revision ran before keep_original; attach the handler to the engine.")
        network = self.network if self.network is not None else engine.network  # type: ignore[attr-defined]
        weights = {k: v.detach().cpu() for k, v in unwrap_network(network).state_dict().items()}
        payload: Any = weights if self._layout is None else {self._layout: weights}
        try:
            atomic_torch_save(payload, self.output_path)
        except OSError as error:
            kept = f"; the original is also kept as {str(self.backup_path)!r}" if self.backup_path else ""
            raise OSError(
                error.errno,
                f"Could not write the revised weights to {str(self.output_path)!r} ({error.strerror or error}). "
                f"The checkpoint there is unchanged{kept}. Free disk space or make the folder writable, then rerun "
                "the revision (with --resume when it saved resume checkpoints).",
            ) from error
        revised_sha256 = sha256_file(self.output_path)
        revision = getattr(engine.state, "revision", None) or {}
        revision.update({"revised_checkpoint": str(self.output_path), "revised_sha256": revised_sha256})
        engine.state.revision = revision
        self.logger.info("Wrote the revised weights to %s (sha256 %s).", self.output_path, revised_sha256[:12])
        return self.output_path
