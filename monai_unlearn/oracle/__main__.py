# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Command line of the retrain oracle: ``python -m monai_unlearn.oracle --bundle-root DIR [options]``.

It trains the bundle's retrain oracle through the bundle CLI, or reuses the cached one, and prints the path of the
oracle's weights on the last line of standard output, ready for ``--unlearn#oracle_checkpoint``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from .runner import DEFAULT_CONFIG_FILES, DEFAULT_SALT_FILE, train_oracle

__all__ = ["add_arguments", "build_parser", "main", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the oracle command's options to ``parser`` and return it."""
    parser.add_argument("--bundle-root", default=".", help="the bundle folder (default: the current directory)")
    parser.add_argument(
        "--config-file",
        action="append",
        default=None,
        help="a config file, relative to the bundle root; repeat it to merge several, left to right "
        f"(default: {' '.join(DEFAULT_CONFIG_FILES)})",
    )
    parser.add_argument(
        "--forget-rule", default=None, help="forget rule expression (default: the config's forget_rule)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="training seed, written to the bundle's seed key (default: 0)"
    )
    parser.add_argument(
        "--cache-dir", default=None, help="oracle cache folder (default: <bundle root>/models/oracle_cache)"
    )
    parser.add_argument(
        "--salt-file",
        default=None,
        help=f"file holding the secret salt of the case-ID hashes (default: <bundle root>/{DEFAULT_SALT_FILE}, created "
        "with a random salt when missing)",
    )
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="a config override with a JSON value, for example num_epochs=2 or 'train#dataloader#batch_size=32'; "
        "repeatable",
    )
    parser.add_argument(
        "--seed-key", default="determinism_seed", help="the bundle's seed key (default: determinism_seed)"
    )
    parser.add_argument("--datalist-key", default="train_datalist", help="config key of the training datalist")
    parser.add_argument("--id-key", default="case_id", help="datalist field that identifies a case (default: case_id)")
    parser.add_argument(
        "--meta-file", default="configs/metadata.json", help="metadata file, relative to the bundle root"
    )
    parser.add_argument(
        "--logging-file", default="configs/logging.conf", help="logging config, relative to the bundle root"
    )
    parser.add_argument("--force", action="store_true", help="retrain even when the cache contains the oracle")
    parser.add_argument("--timeout", type=float, default=None, help="stop the training after this many seconds")
    return parser


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``python -m monai_unlearn.oracle``."""
    parser = argparse.ArgumentParser(
        prog="python -m monai_unlearn.oracle",
        description="Train (or reuse from the cache) the retrain oracle of a MONAI bundle: the bundle's own training "
        "recipe on its retain set.",
    )
    return add_arguments(parser)


def _parse_overrides(items: Sequence[str]) -> dict:
    overrides = {}
    for item in items:
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise SystemExit(f"Invalid --override {item!r}: expected KEY=JSON, for example num_epochs=2.")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


def run(arguments: argparse.Namespace) -> int:
    """Train or reuse the oracle described by parsed ``arguments``; print the checkpoint path; return 0."""
    result = train_oracle(
        arguments.bundle_root,
        cache_dir=arguments.cache_dir,
        force=arguments.force,
        timeout=arguments.timeout,
        config_files=arguments.config_file or list(DEFAULT_CONFIG_FILES),
        forget_rule=arguments.forget_rule,
        seed=arguments.seed,
        salt_file=arguments.salt_file,
        overrides=_parse_overrides(arguments.override),
        seed_key=arguments.seed_key,
        datalist_key=arguments.datalist_key,
        id_key=arguments.id_key,
        meta_file=arguments.meta_file,
        logging_file=arguments.logging_file,
    )
    state = "reused from the cache" if result.reused else "trained"
    print(f"Retrain oracle {state}: key {result.key_digest[:12]}, folder {result.entry_dir}")
    print(result.checkpoint)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m monai_unlearn.oracle``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(name)s - %(levelname)s - %(message)s")
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
