# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Location of the real datasets used by the bundles, tests, tutorials and benchmarks."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_DIR_ENV", "resolve_data_dir", "REPOSITORY_ROOT"]

#: Environment variable naming the data directory.
DATA_DIR_ENV = "MONAI_UNLEARN_DATA"

#: Root of a source checkout (the folder above the package); meaningless for an installed wheel.
REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Return the data directory: ``data_dir`` if given, else ``$MONAI_UNLEARN_DATA``, else ``../shared/data``.

    The fallback ``../shared/data`` is looked up beside the current directory and beside the repository root, in
    that order, and used only when it exists.

    Raises:
        FileNotFoundError: when the chosen directory does not exist; the message says how to obtain the data.
    """
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or None
    if data_dir is not None:
        path = Path(data_dir).expanduser().resolve()
        if not path.is_dir():
            raise FileNotFoundError(
                f"Data directory {str(path)!r} does not exist. Pass an existing directory or set {DATA_DIR_ENV}; "
                "see the README's 'Data' section for how to obtain the public datasets."
            )
        return path
    for base in (Path.cwd(), REPOSITORY_ROOT):
        candidate = (base / ".." / "shared" / "data").resolve()
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"No data directory found: pass --data-dir, set {DATA_DIR_ENV}, or place the data in ../shared/data. "
        "See the README's 'Data' section for how to obtain the public datasets."
    )
