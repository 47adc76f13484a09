# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""File helpers shared by handlers: atomic writes and checksums.

An atomic write goes to a temporary file in the destination's folder, is flushed and synced to disk, and then
replaces the destination with ``os.replace``, so a reader sees either the old file or the complete new one, never a
partial file, even when the process is killed midway.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from os import write as _os_write
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "sha256_file",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_torch_save",
    "load_checkpoint",
    "state_dict_layout",
    "check_writable_dir",
]


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Return the hexadecimal SHA-256 digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _DescriptorWriter(io.RawIOBase):
    """Binary file object that writes straight to a descriptor with ``os.write``, so a failing write (a full disk)
    surfaces as the ``OSError`` of the write itself."""

    def __init__(self, descriptor: int) -> None:
        super().__init__()
        self.descriptor = descriptor

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        written = 0
        while written < len(view):
            written += _os_write(self.descriptor, view[written:])
        return written

    def fileno(self) -> int:
        return self.descriptor


def _atomic_write(path: str | os.PathLike, write: Any) -> Path:
    destination = Path(path)
    destination.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent)
    try:
        try:
            with io.BufferedWriter(_DescriptorWriter(descriptor)) as handle:
                write(handle)
                handle.flush()
                os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, destination)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return destination


def check_writable_dir(path: str | os.PathLike, purpose: str = "output") -> Path:
    """Create ``path`` if needed and check that a file can be created in it, by creating and removing one.

    A real write is the only test that also holds for root, read-only mounts and immutable folders, where permission
    bits or ``os.access`` say yes.

    Raises:
        PermissionError: when the folder cannot be created or written; the message names it and the purpose.
    """
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        descriptor, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(descriptor)
        os.unlink(probe)
    except OSError as error:
        raise PermissionError(
            f"The {purpose} folder {str(folder)!r} is not writable ({error.strerror or error}). Make it writable for "
            "this user, or choose another folder."
        ) from error
    return folder


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    return _atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically and return the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically and return the path."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically and return the path."""
    return _atomic_write(path, lambda handle: torch.save(obj, handle))


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """Load a checkpoint with ``torch.load(weights_only=True)``, turning loader errors into clear messages.

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: when the file is not a weights-only checkpoint (for example a pickled module) or is corrupt.
    """
    checkpoint = Path(path)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"Checkpoint {str(checkpoint)!r} not found; train the bundle first or fix the path.")
    try:
        return torch.load(checkpoint, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError or EOFError depending on the damage
        raise ValueError(
            f"Cannot load {str(checkpoint)!r} as a weights-only checkpoint ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}). Save the state_dict (torch.save(model.state_dict(), "
            "path)) instead of a pickled module, or restore the file if it is damaged."
        ) from error


def state_dict_layout(checkpoint: Any) -> str | None:
    """Return the key under which a checkpoint stores the model weights, or None for a bare state_dict.

    Raises:
        ValueError: when the checkpoint is not a dictionary of tensors or a dictionary holding one.
    """
    if not isinstance(checkpoint, dict) or not checkpoint:
        raise ValueError(f"A checkpoint must be a non-empty dict, got {type(checkpoint).__name__}.")
    if all(torch.is_tensor(v) for v in checkpoint.values()):
        return None
    for key in ("model", "network", "state_dict", "net"):
        value = checkpoint.get(key)
        if isinstance(value, dict) and value and all(torch.is_tensor(v) for v in value.values()):
            return key
    raise ValueError(
        f"Cannot find model weights in a checkpoint with keys {sorted(map(str, checkpoint))[:10]}: expected a "
        "state_dict or a dict with one under 'model'."
    )
