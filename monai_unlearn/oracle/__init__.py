# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""The retrain oracle: a bundle retrained on its retain set with its own recipe, cached by config, forget set and seed.

Command line: ``python -m monai_unlearn.oracle --bundle-root DIR [options]`` (see ``--help``), or
``monai-unlearn oracle ...``. Python: :func:`train_oracle`.
"""

from __future__ import annotations

from .cache import KEY_FILE, OracleCache, OracleKey
from .datalist import retain_entries
from .runner import (
    DEFAULT_CONFIG_FILES,
    DEFAULT_SALT_FILE,
    OraclePlan,
    OracleResult,
    default_cache_dir,
    plan_oracle,
    train_oracle,
)

__all__ = [
    "DEFAULT_CONFIG_FILES",
    "DEFAULT_SALT_FILE",
    "KEY_FILE",
    "OracleCache",
    "OracleKey",
    "OraclePlan",
    "OracleResult",
    "default_cache_dir",
    "plan_oracle",
    "retain_entries",
    "train_oracle",
]
