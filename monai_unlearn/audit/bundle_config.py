# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""The merged content of a bundle's config files, and its digest, as recorded by audit manifests and oracle caches.

``python -m monai.bundle run --config_file "['a.json','b.json']" --key value`` merges the files left to right and
then applies the ``--key value`` overrides. :func:`merge_bundle_config` does the same merge without running
anything, and :func:`bundle_cli_config` recovers the files and overrides from the command line of the running
bundle CLI process, so that a handler inside a bundle can record the config it runs under.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser

from monai_unlearn.utils import sha256_file

__all__ = ["BUNDLE_RUN_ARGUMENTS", "merge_bundle_config", "config_digest", "bundle_cli_arguments", "bundle_cli_config"]

#: Arguments of ``monai.bundle run`` that are not config overrides.
BUNDLE_RUN_ARGUMENTS = (
    "run_id",
    "init_id",
    "final_id",
    "meta_file",
    "config_file",
    "logging_file",
    "tracking",
    "args_file",
)


def _as_file_list(config_files: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    if isinstance(config_files, (str, os.PathLike)):
        text = str(config_files)
        if not Path(text).is_file() and "," in text:
            return [part.strip() for part in text.split(",") if part.strip()]
        return [text]
    return [str(path) for path in config_files]


def merge_bundle_config(
    config_files: str | os.PathLike | Sequence[str | os.PathLike],
    overrides: Mapping[str, Any] | None = None,
    base_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Merge config files left to right and apply overrides, as ``monai.bundle run`` does, without parsing them.

    Args:
        config_files: JSON or YAML files; relative paths are relative to ``base_dir``.
        overrides: id-value pairs such as ``{"unlearn#passes": 4}``, applied after the merge.
        base_dir: folder of relative config paths (the bundle root); None uses the current directory.

    Returns:
        The merged, unresolved config content (expressions and references kept as text).

    Raises:
        FileNotFoundError: when a config file does not exist.
    """
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    paths = []
    for name in _as_file_list(config_files):
        path = Path(name) if Path(name).is_absolute() else base / name
        if not path.is_file():
            raise FileNotFoundError(f"Config file {str(path)!r} not found; check the bundle root and the file names.")
        paths.append(str(path))
    parser = ConfigParser(config=ConfigParser.load_config_files(paths))
    parser.update(dict(overrides or {}))
    return parser.get()


def config_digest(content: Any) -> str:
    """Return the SHA-256 of a config's canonical JSON form (sorted keys, no whitespace); sets are sorted first."""

    def canonical(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(key): canonical(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [canonical(item) for item in value]
        if isinstance(value, (set, frozenset)):
            return sorted((canonical(item) for item in value), key=repr)
        return value

    text = json.dumps(canonical(content), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def bundle_cli_arguments(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    """Return the arguments of a ``python -m monai.bundle run ...`` command line, parsed as the bundle CLI parses them.

    Values are parsed with ``fire``'s parser, as the bundle CLI does (``"4"`` becomes 4, ``"['a','b']"`` a list).
    Defaults from ``--args_file`` are merged under the command-line values.

    Args:
        argv: the command line; None uses ``sys.argv``.

    Returns:
        A dictionary of all ``--key value`` arguments, or None when ``argv`` is not a bundle ``run`` command.
    """
    from fire.parser import DefaultParseValue

    argv = list(sys.argv if argv is None else argv)
    # Under ``python -m monai.bundle``, argv[0] is the path of monai/bundle/__main__.py.
    if len(argv) < 2 or argv[1] != "run" or not Path(argv[0]).as_posix().endswith("monai/bundle/__main__.py"):
        return None
    arguments: dict[str, Any] = {}
    tokens = argv[2:]
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if not token.startswith("--"):
            index += 1
            continue
        key, separator, value = token[2:].partition("=")
        if not separator:
            if index + 1 < len(tokens) and not tokens[index + 1].startswith("--"):
                value = tokens[index + 1]
                index += 1
            else:
                value = "True"
        if key.replace("-", "_") in BUNDLE_RUN_ARGUMENTS:
            key = key.replace("-", "_")
        arguments[key] = DefaultParseValue(value)
        index += 1
    args_file = arguments.get("args_file")
    if args_file:
        defaults = ConfigParser.load_config_file(str(args_file))
        arguments = {**defaults, **arguments}
    return arguments


def bundle_cli_config(argv: Sequence[str] | None = None, base_dir: str | os.PathLike | None = None) -> dict | None:
    """Describe the config of the running bundle CLI process: files with their SHA-256, overrides, merged content.

    Args:
        argv: the command line; None uses ``sys.argv``.
        base_dir: folder of relative config paths; None uses the current directory (the bundle CLI's).

    Returns:
        ``{"config_files": [{"path", "sha256"}], "overrides": {...}, "config": merged content, "config_sha256": ...}``,
        or None when the process is not a bundle ``run`` command.
    """
    arguments = bundle_cli_arguments(argv)
    if arguments is None or not arguments.get("config_file"):
        return None
    files = _as_file_list(arguments["config_file"])
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    overrides = {key: value for key, value in arguments.items() if key not in BUNDLE_RUN_ARGUMENTS}
    merged = merge_bundle_config(files, overrides, base)
    return {
        "config_files": [
            {"path": name, "sha256": sha256_file(name if Path(name).is_absolute() else base / name)} for name in files
        ],
        "overrides": overrides,
        "config": merged,
        "config_sha256": config_digest(merged),
    }
