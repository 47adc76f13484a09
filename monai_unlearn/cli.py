# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""The ``monai-unlearn`` command: a thin layer over :mod:`monai_unlearn.bundle`.

Sub-commands:

- ``revise BUNDLE_DIR --forget RULE [...]``: revise a bundle in place through the MONAI bundle CLI;
- ``layout BUNDLE_DIR``: print the ids a revision would change, without writing anything;
- ``verify-metadata BUNDLE_DIR``: check ``configs/metadata.json`` against the offline schema;
- ``oracle --bundle-root BUNDLE_DIR [...]``: train (or reuse from the cache) the bundle's retrain oracle, with the
  options of ``python -m monai_unlearn.oracle``.

Run ``monai-unlearn revise --help`` for every option.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["build_parser", "main", "parse_assignment"]


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse ``ID=VALUE`` (VALUE as JSON when it parses, else as text) for ``--set``.

    Raises:
        argparse.ArgumentTypeError: when there is no ``=`` or the id is empty.
    """
    key, separator, raw = text.partition("=")
    if not separator or not key.strip():
        raise argparse.ArgumentTypeError(f"Invalid --set {text!r}: expected ID=VALUE, for example batch_size=16.")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"Invalid JSON {text!r}: {error.msg}.") from error
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"Expected a JSON object such as '{{\"steps\": 5}}', got {text!r}.")
    return value


def _box(text: str) -> list[float]:
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"Invalid --box {text!r}: expected LOW,HIGH, for example 0,1.") from error
    return [low, high]


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``monai-unlearn``."""
    parser = argparse.ArgumentParser(prog="monai-unlearn", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    commands = parser.add_subparsers(dest="command", required=True)

    revise = commands.add_parser(
        "revise",
        help="revise a bundle in place so that its model forgets part of its training data",
        description="Revise a MONAI bundle in place through the bundle CLI. The overlay is written beside the "
        "bundle's configs (configs/revise.json or .yaml) and the command that runs it is printed, so the revision "
        "can be inspected and rerun.",
    )
    revise.add_argument("bundle_dir", help="the bundle's root folder (with configs/ and models/)")
    what = revise.add_argument_group("what to forget and how")
    what.add_argument("--forget", metavar="RULE", help="forget rule, for example \"label in {1}\" or \"site == 'B'\"")
    what.add_argument("--method", default="psg", help="unlearning method or preset (default: psg)")
    what.add_argument("--epsilon", type=float, help="search radius of boundary methods, in the network's input units")
    what.add_argument("--box", type=_box, metavar="LOW,HIGH", help="valid input range, for example 0,1")
    what.add_argument("--method-kwargs", type=_json_object, default={}, metavar="JSON", help="other method settings")
    what.add_argument("--passes", type=int, default=1, help="passes over the forget set (default: 1)")
    what.add_argument("--lr", type=float, help="learning rate set on the bundle's optimizer (default: keep it)")
    what.add_argument("--batchnorm", default="eval", help="BatchNorm policy: train, eval or frozen (default: eval)")
    what.add_argument("--seed", type=int, default=0, help="seed of the revision (default: 0)")
    what.add_argument("--overlay", metavar="FILE", help="use this hand-written overlay instead of --forget ...")

    where = revise.add_argument_group("bundle files")
    where.add_argument("--config-file", action="append", metavar="FILE", help="training config (repeat to merge)")
    where.add_argument("--meta-file", default="configs/metadata.json", help="metadata file (default: %(default)s)")
    where.add_argument("--logging-file", default="configs/logging.conf", help="logging config (default: %(default)s)")
    where.add_argument("--checkpoint", default="models/model.pt", help="checkpoint to revise (default: %(default)s)")
    where.add_argument("--overlay-file", metavar="FILE", help="where to write the overlay (default: configs/revise.*)")
    where.add_argument("--trainer-id", help="config id of the trainer, for bundles of neither layout")
    where.add_argument("--transforms-id", help="config id of the transform list the forget tag is appended to")
    where.add_argument(
        "--set", action="append", type=parse_assignment, default=[], metavar="ID=VALUE",
        help="override a bundle config value for the run, for example batch_size=16 (repeatable)",
    )

    run = revise.add_argument_group("run")
    run.add_argument("--checkpoint-interval", type=int, default=0, metavar="N",
                     help="save resume checkpoints every N iterations (default: 0, none)")
    run.add_argument("--work-dir", default="models/revision_checkpoints", help="folder of the resume checkpoints")
    run.add_argument("--resume", action="store_true", help="continue an interrupted revision")
    run.add_argument("--restart", action="store_true", help="discard an interrupted revision and start again")
    run.add_argument("--version-bump", choices=("patch", "minor"), default="patch", help="default: patch")
    run.add_argument("--new-version", help="set this bundle version instead of bumping")
    run.add_argument("--no-report", action="store_true", help="do not write the unlearning report")
    run.add_argument("--no-preflight", action="store_true", help="skip the checks before the run")
    run.add_argument("--dry-run", action="store_true", help="write the overlay and print the command only")

    layout = commands.add_parser("layout", help="print the config ids a revision of this bundle would change")
    layout.add_argument("bundle_dir")
    layout.add_argument("--config-file", action="append", metavar="FILE")
    layout.add_argument("--trainer-id")

    verify = commands.add_parser("verify-metadata", help="check configs/metadata.json against the offline schema")
    verify.add_argument("bundle_dir")
    verify.add_argument("--meta-file", default="configs/metadata.json")
    verify.add_argument("--schema", help="JSON schema file (default: the one shipped with monai_unlearn)")

    from monai_unlearn.oracle.__main__ import add_arguments as add_oracle_arguments

    oracle = commands.add_parser(
        "oracle",
        help="train (or reuse from the cache) the bundle's retrain oracle",
        description="Train (or reuse from the cache) the retrain oracle of a MONAI bundle: the bundle's own training "
        "recipe on its retain set. The last line of the output is the path of the oracle's weights.",
    )
    add_oracle_arguments(oracle)
    return parser


def _request(args: argparse.Namespace) -> Any:
    from monai_unlearn.bundle import ForgetRequest

    if args.forget is None:
        return None
    method_kwargs = dict(args.method_kwargs)
    if args.epsilon is not None:
        method_kwargs["epsilon"] = args.epsilon
    if args.box is not None:
        method_kwargs["box"] = args.box
    return ForgetRequest(
        rule=args.forget,
        method=args.method,
        method_kwargs=method_kwargs,
        passes=args.passes,
        learning_rate=args.lr,
        batchnorm=args.batchnorm,
        seed=args.seed,
    )


def _revise(args: argparse.Namespace) -> int:
    from monai_unlearn.bundle import revise

    if (args.forget is None) == (args.overlay is None):
        raise ValueError("Pass either --forget RULE (an overlay is generated) or --overlay FILE, not both.")
    result = revise(
        args.bundle_dir,
        _request(args),
        overlay_file=args.overlay,
        config_files=args.config_file,
        meta_file=args.meta_file,
        logging_file=args.logging_file,
        checkpoint=args.checkpoint,
        overrides=dict(args.set),
        trainer_id=args.trainer_id,
        transforms_id=args.transforms_id,
        report=not args.no_report,
        checkpoint_interval=args.checkpoint_interval,
        work_dir=args.work_dir,
        resume=args.resume,
        restart=args.restart,
        version_bump=args.version_bump,
        new_version=args.new_version,
        output_overlay=args.overlay_file,
        preflight=not args.no_preflight,
        dry_run=args.dry_run,
        output=sys.stdout.write,
    )
    command = " ".join(f'"{part}"' if " " in part or "[" in part else part for part in result.command)
    print(f"Overlay: {result.overlay_file}")
    print(f"Bundle CLI command (run from {result.bundle_dir}):\n  {command}")
    if args.dry_run:
        return 0
    print(f"Revised {result.checkpoint} (sha256 {result.revised_sha256})")
    print(f"Original kept as {result.original_backup} (sha256 {result.original_sha256})")
    print(f"Bundle version {result.previous_version} -> {result.version}")
    if result.report_file is not None:
        print(f"Report: {result.report_file} (and .md)")
    return 0


def _layout(args: argparse.Namespace) -> int:
    from pathlib import Path

    from monai_unlearn.bundle import detect_layout, find_training_configs, load_bundle_config

    bundle = Path(args.bundle_dir)
    files = [bundle / f for f in args.config_file] if args.config_file else find_training_configs(bundle)
    layout = detect_layout(load_bundle_config(files), trainer_id=args.trainer_id)
    print(json.dumps({"config_files": [str(f) for f in files], **layout.to_dict()}, indent=2))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from pathlib import Path

    from monai_unlearn.bundle import verify_bundle_metadata

    meta = Path(args.bundle_dir) / args.meta_file
    verify_bundle_metadata(meta, args.schema)
    print(f"{meta} is valid.")
    return 0


def _oracle(args: argparse.Namespace) -> int:
    from monai_unlearn.oracle.__main__ import run

    return run(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``monai-unlearn``; return the exit status (1 with a one-line error for bad input)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s - %(name)s - %(levelname)s - %(message)s",
    )
    handlers = {"revise": _revise, "layout": _layout, "verify-metadata": _verify, "oracle": _oracle}
    try:
        return handlers[args.command](args)
    except (ValueError, FileNotFoundError, FileExistsError, PermissionError, RuntimeError) as error:
        print(f"monai-unlearn {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
