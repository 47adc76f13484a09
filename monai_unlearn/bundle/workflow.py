# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""The revision workflow: revise a bundle in place through the MONAI bundle CLI.

:func:`revise` is the Python API behind ``monai-unlearn revise``. It finds the bundle's training config and layout
and writes the overlay beside the bundle's configs, so that the revision can be inspected and rerun with the printed
``python -m monai.bundle run revise ...`` command. Then it runs the preflight checks and the real bundle CLI, in a
subprocess or, on request, in this process. The overlay's handlers keep the original checkpoint under a name that
records its hash, write the revised weights atomically, write the report and bump the bundle version. With a
checkpoint interval, the trainer, network and optimizer are saved every few iterations into a work folder, and
``resume=True`` continues an interrupted revision from the newest complete checkpoint there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monai_unlearn.utils import atomic_write_json, check_writable_dir, load_checkpoint, sha256_file

from .layout import BundleLayout, BundleLayoutError, detect_layout, find_training_configs, load_bundle_config
from .metadata import bump_version, format_changelog_entry, record_revision
from .overlay import OVERLAY_REQUEST_KEY, REVISE_RUN_ID, ForgetRequest, build_overlay, check_overlay, write_overlay
from .preflight import PreflightSummary, check_checkpoint_fits, check_datalist, check_image_files

__all__ = [
    "RevisionError",
    "RevisionResult",
    "attach_handlers",
    "bundle_command",
    "find_resume_checkpoint",
    "revise",
]

logger = logging.getLogger(__name__)

_REQUEST_RECORD = "revision_request.json"
_ERROR_LINE = re.compile(r"^\s*[\w.]*(Error|Exception|Interrupt)\b.*:")


class RevisionError(RuntimeError):
    """Raised when the bundle run of a revision fails; the original checkpoint is unchanged."""


@dataclass
class RevisionResult:
    """Outcome of :func:`revise`.

    Attributes:
        bundle_dir: the bundle's root folder.
        layout: the detected layout.
        overlay_file: the overlay merged onto the training config.
        command: the bundle CLI command of the revision (run from ``bundle_dir``).
        checkpoint: the revised checkpoint.
        original_sha256: digest of the checkpoint before the revision.
        revised_sha256: digest after the revision (None for a dry run).
        original_backup: where the original checkpoint is kept.
        previous_version, version: the bundle version before and after.
        report_file: the JSON report, when one was written.
        preflight: what the preflight checked.
        resumed_from: the resume checkpoint, when the run continued an interrupted one.
    """

    bundle_dir: Path
    layout: BundleLayout
    overlay_file: Path
    command: list[str]
    checkpoint: Path
    original_sha256: str
    revised_sha256: str | None = None
    original_backup: Path | None = None
    previous_version: str | None = None
    version: str | None = None
    report_file: Path | None = None
    preflight: PreflightSummary = field(default_factory=PreflightSummary)
    resumed_from: Path | None = None


def attach_handlers(engine: Any, handlers: Iterable[Any]) -> Any:
    """Attach ``handlers`` to ``engine``, skipping None (a disabled config component), and return the engine.

    Overlays use it for handlers that hold the engine itself and so cannot be in the engine's own handler list.
    """
    for handler in handlers:
        if handler is not None:
            handler.attach(engine)
    return engine


def _iteration_of(path: Path) -> int:
    numbers = re.findall(r"\d+", path.stem)
    return int(numbers[-1]) if numbers else -1


def find_resume_checkpoint(work_dir: str | os.PathLike) -> Path | None:
    """Return the newest complete resume checkpoint in ``work_dir``, or None when there is none.

    Files are tried from the highest iteration down. A file that does not load (a save cut short by a kill), or
    that lacks the trainer, network or optimizer state, is skipped with a warning.
    """
    folder = Path(work_dir)
    if not folder.is_dir():
        return None
    for path in sorted(folder.glob("*.pt"), key=_iteration_of, reverse=True):
        try:
            state = load_checkpoint(path)
        except (ValueError, OSError) as error:
            logger.warning("Skipping the resume checkpoint %s: %s", path, error)
            continue
        if isinstance(state, dict) and {"trainer", "network", "optimizer"} <= set(state):
            return path
        logger.warning("Skipping %s: it lacks the trainer, network or optimizer state.", path)
    return None


def _remove_work_files(work: Path) -> None:
    """Delete the resume checkpoints and request record of a revision, and the work folder if it is then empty."""
    if not work.is_dir():
        return
    for path in [*work.glob("revision*.pt"), work / _REQUEST_RECORD]:
        if path.is_file():
            path.unlink()
    if not any(work.iterdir()):
        work.rmdir()


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def _override_argument(value: Any) -> str:
    # The bundle CLI (python-fire) evaluates literals, so non-strings go as Python literals.
    return value if isinstance(value, str) else repr(value)


def bundle_command(
    config_files: Sequence[str | os.PathLike],
    meta_file: str | os.PathLike,
    logging_file: str | os.PathLike | None,
    overrides: Mapping[str, Any],
    run_id: str = REVISE_RUN_ID,
    python: str = sys.executable,
) -> list[str]:
    """Return the ``python -m monai.bundle run`` command of a revision."""
    command = [python, "-m", "monai.bundle", "run", run_id, "--config_file", str([str(f) for f in config_files])]
    command += ["--meta_file", str(meta_file)]
    if logging_file is not None:
        command += ["--logging_file", str(logging_file)]
    for key, value in overrides.items():
        command += [f"--{key}", _override_argument(value)]
    return command


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _bundle_file(bundle: Path, path: str | os.PathLike) -> Path:
    candidate = Path(path)
    return candidate if candidate.is_absolute() else bundle / candidate


def _is_expression_wrapper(error: BaseException) -> bool:
    return isinstance(error, RuntimeError) and str(error).startswith("Failed to evaluate")


def _error_summary(lines: Sequence[str]) -> str:
    """Return the last exception line of the output that is not MONAI's wrapper of the run expression."""
    for line in reversed(lines):
        if _ERROR_LINE.match(line) and "Failed to evaluate" not in line:
            return line.strip()
    return lines[-1].strip() if lines else "no output"


def _run_subprocess(command: list[str], cwd: Path, env: Mapping[str, str] | None, output: Callable[[str], Any] | None,
                    timeout: float | None) -> tuple[int, list[str]]:
    tail: deque[str] = deque(maxlen=200)
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            tail.append(line.rstrip("\n"))
            if output is not None:
                output(line)
        code = process.wait(timeout=timeout)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return code, list(tail)


def _run_in_process(
    bundle: Path, config_files: list[str], meta_file: str, overrides: Mapping[str, Any], run_id: str
) -> None:
    from monai.bundle import run as bundle_run

    previous = os.getcwd()
    os.chdir(bundle)
    try:
        # logging_file=False keeps the caller's logging configuration.
        bundle_run(
            run_id=run_id, config_file=config_files, meta_file=meta_file, logging_file=False, **dict(overrides)
        )
    except RuntimeError as error:
        # MONAI wraps errors of the run expression in "Failed to evaluate ConfigExpression"; raise the cause.
        root: BaseException = error
        while _is_expression_wrapper(root) and root.__cause__ is not None:
            root = root.__cause__
        if root is error:
            raise
        raise root from None
    finally:
        os.chdir(previous)


def _preflight(
    config_files: list[Path],
    meta_file: Path,
    overrides: Mapping[str, Any],
    layout: BundleLayout,
    rule: str | None,
    checkpoint: Path,
) -> PreflightSummary:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(f) for f in config_files])
    parser.read_meta(str(meta_file))
    for key, value in overrides.items():
        parser[key] = value
    summary = PreflightSummary()

    network = parser.get_parsed_content(f"{layout.trainer_id}#network", instantiate=True)
    try:
        check_checkpoint_fits(network, checkpoint)
    finally:
        del network

    num_classes = None
    outputs = (parser.get("_meta_", {}).get("network_data_format") or {}).get("outputs") or {}
    prediction = next(iter(outputs.values()), None) if isinstance(outputs, dict) else None
    if isinstance(prediction, dict) and prediction.get("format") == "classes" and prediction.get("num_channels"):
        num_classes = int(prediction["num_channels"])

    if layout.datalist_id is not None:
        datalist = parser.get_parsed_content(layout.datalist_id, instantiate=True)
        summary.training_samples = len(datalist) if hasattr(datalist, "__len__") else None
        if rule is not None:
            summary.forget_samples, summary.retain_samples = check_datalist(datalist, rule, num_classes=num_classes)
        summary.dicom_files = check_image_files(datalist)
    else:
        logger.info("The training dataset of %s has no 'data' argument; the rule is checked during the run.", layout)
    return summary


def _record_missing_revision(
    meta: Path,
    rule: str | None,
    result: RevisionResult,
    summary: PreflightSummary,
    version_bump: str,
    new_version: str | None,
) -> str:
    """Bump the version after a hand-written overlay whose handlers did not (it has no BundleMetadataUpdater)."""
    report = json.loads(result.report_file.read_text(encoding="utf-8")) if result.report_file else None
    entry = format_changelog_entry(
        rule=rule,
        method=(report or {}).get("method"),
        passes=len((report or {}).get("passes") or []) or None,
        forget_count=summary.forget_samples,
        retain_count=summary.retain_samples,
        revision={
            "original_sha256": result.original_sha256,
            "original_backup": str(result.original_backup or ""),
            "revised_sha256": result.revised_sha256,
        },
        report=report,
    )
    logger.info("The overlay did not record the revision in %s; recording it now.", meta)
    return record_revision(meta, entry, version_bump, new_version)


def _predicts_images(meta_file: Path) -> bool:
    """Return True when the metadata declares an image-shaped output (a segmentation bundle)."""
    try:
        metadata = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    outputs = (metadata.get("network_data_format") or {}).get("outputs") or {}
    return any(isinstance(o, dict) and o.get("type") == "image" for o in outputs.values())


def _overlay_rule(overlay: Mapping[str, Any]) -> str | None:
    request = overlay.get(OVERLAY_REQUEST_KEY)
    if isinstance(request, Mapping) and isinstance(request.get("rule"), str):
        return request["rule"]
    for candidate in (overlay.get("forget_rule"), (overlay.get("unlearn") or {}).get("forget_rule")):
        if isinstance(candidate, str) and not candidate.startswith(("@", "$", "%")):
            return candidate
    return None


def revise(
    bundle_dir: str | os.PathLike,
    request: ForgetRequest | None = None,
    *,
    overlay_file: str | os.PathLike | None = None,
    config_files: Sequence[str | os.PathLike] | None = None,
    meta_file: str | os.PathLike = "configs/metadata.json",
    logging_file: str | os.PathLike | None = "configs/logging.conf",
    checkpoint: str | os.PathLike = "models/model.pt",
    overrides: Mapping[str, Any] | None = None,
    trainer_id: str | None = None,
    transforms_id: str | None = None,
    report: bool = True,
    checkpoint_interval: int = 0,
    work_dir: str | os.PathLike = "models/revision_checkpoints",
    resume: bool = False,
    restart: bool = False,
    version_bump: str = "patch",
    new_version: str | None = None,
    output_overlay: str | os.PathLike | None = None,
    preflight: bool = True,
    in_process: bool = False,
    dry_run: bool = False,
    env: Mapping[str, str] | None = None,
    output: Callable[[str], Any] | None = None,
    timeout: float | None = None,
) -> RevisionResult:
    """Revise a bundle in place so that its model forgets what ``request`` describes.

    Paths are relative to ``bundle_dir`` unless absolute.

    Args:
        bundle_dir: the bundle's root folder (with ``configs/`` and ``models/``).
        request: what to forget and how; exclusive with ``overlay_file``.
        overlay_file: a hand-written overlay to use instead of a generated one; it is checked against the bundle's
            layout before anything runs.
        config_files: the training config files; None finds ``configs/common.*`` and ``configs/train.*``.
        meta_file: the bundle's metadata file (its version is bumped when the revision completes).
        logging_file: the logging config passed to the bundle CLI; ignored when missing or ``in_process``.
        checkpoint: the checkpoint revised in place.
        overrides: extra ``id: value`` overrides for the bundle CLI (as ``--id value``).
        trainer_id: id of the training engine, for bundles of neither layout.
        transforms_id: id of the transform list the forget tag is appended to, overriding the automatic choice.
        report: add the unlearning report over the bundle's validation loader.
        checkpoint_interval: save resume checkpoints every this many iterations (0: none).
        work_dir: folder of the resume checkpoints.
        resume: continue an interrupted revision from the newest checkpoint in ``work_dir``.
        restart: discard the checkpoints of an interrupted revision and start again.
        version_bump: ``"patch"`` or ``"minor"``.
        new_version: explicit new bundle version.
        output_overlay: where the generated overlay is written; default ``configs/revise.json`` (or ``.yaml`` for a
            YAML bundle).
        preflight: run the checks of :mod:`~monai_unlearn.bundle.preflight` first.
        in_process: run ``monai.bundle.run`` in this process instead of a subprocess; it sets the global random
            seeds, and the working directory while it runs.
        dry_run: write the overlay and run the preflight, but do not run the revision.
        env: environment of the subprocess; None inherits this process's.
        output: called with each output line of the subprocess (for example ``sys.stdout.write``).
        timeout: seconds after which the subprocess is killed.

    Returns:
        a :class:`RevisionResult`.

    Raises:
        FileNotFoundError: for a missing bundle, config, metadata file or checkpoint.
        BundleLayoutError: for an unknown layout or an overlay written for another layout.
        PreflightError: when a preflight check fails.
        PermissionError: when the models, configs, report or work folder is not writable.
        RevisionError: when the bundle run fails; the original checkpoint is unchanged.
    """
    bundle = Path(bundle_dir).expanduser().resolve()
    if not bundle.is_dir():
        raise FileNotFoundError(f"Bundle folder {str(bundle)!r} not found.")
    if (request is None) == (overlay_file is None):
        raise ValueError("Pass either a forget request (--forget RULE ...) or an overlay file (--overlay), not both.")
    if resume and restart:
        raise ValueError("resume and restart exclude each other: resume continues the interrupted run, restart drops it.")
    files = [_bundle_file(bundle, f) for f in config_files] if config_files else find_training_configs(bundle)
    meta = _bundle_file(bundle, meta_file)
    if not meta.is_file():
        raise FileNotFoundError(f"Bundle metadata {str(meta)!r} not found; every MONAI bundle has configs/metadata.json.")
    checkpoint_path = _bundle_file(bundle, checkpoint)
    if not checkpoint_path.is_file():
        raise FileNotFoundError(
            f"Checkpoint {str(checkpoint_path)!r} not found; train the bundle first or pass the checkpoint with --checkpoint."
        )
    work = _bundle_file(bundle, work_dir)
    config = load_bundle_config(files)
    layout = detect_layout(config, trainer_id=trainer_id, transforms_id=transforms_id)
    logger.info("Bundle %s has the %s layout (trainer %s).", bundle, layout.name, layout.trainer_id)

    if request is not None:
        request.validate()
        if report and _predicts_images(meta):
            # TODO: add the segmentation report once the segmentation metrics can be selected from an overlay.
            logger.info("The bundle predicts images (segmentation); the classification report is left out.")
            report = False
        relative_checkpoint = _relative(checkpoint_path, bundle)
        overlay = build_overlay(
            config,
            layout,
            request,
            checkpoint=relative_checkpoint,
            metadata_file=_relative(meta, bundle),
            report=report,
            work_dir=_relative(work, bundle),
            checkpoint_interval=checkpoint_interval,
            version_bump=version_bump,
            new_version=new_version,
        )
        suffix = ".json" if files[-1].suffix.lower() == ".json" else files[-1].suffix.lower()
        overlay_path = _bundle_file(bundle, output_overlay) if output_overlay else bundle / "configs" / f"revise{suffix}"
        rule: str | None = request.rule
    else:
        from monai.bundle import ConfigParser

        overlay_path = _bundle_file(bundle, overlay_file)  # type: ignore[arg-type]
        if not overlay_path.is_file():
            raise FileNotFoundError(f"Overlay file {str(overlay_path)!r} not found.")
        overlay = ConfigParser.load_config_file(str(overlay_path))
        if not isinstance(overlay, dict):
            raise ValueError(f"Overlay file {str(overlay_path)!r} must hold a mapping of config ids to values.")
        rule = _overlay_rule(overlay) or _overlay_rule(config)
    check_overlay(config, overlay, layout)

    check_writable_dir(checkpoint_path.parent, "checkpoint")
    check_writable_dir(meta.parent, "bundle configs")
    if checkpoint_interval > 0 or resume:
        check_writable_dir(work, "revision work")
    metadata = json.loads(meta.read_text(encoding="utf-8"))
    previous_version = str(metadata.get("version"))
    if new_version is None:
        bump_version(previous_version, version_bump)  # fail now, not after the run

    run_overrides: dict[str, Any] = {"bundle_root": str(bundle), **dict(overrides or {})}
    original_sha256 = sha256_file(checkpoint_path)
    fingerprint = _fingerprint(overlay, {k: v for k, v in run_overrides.items()}, original_sha256,
                               [sha256_file(f) for f in files])
    resumed_from = None
    existing = find_resume_checkpoint(work)
    record = work / _REQUEST_RECORD
    if resume:
        if existing is None:
            raise FileNotFoundError(
                f"There is no complete resume checkpoint in {str(work)!r}, so there is nothing to resume. Run the "
                "revision without --resume (with --checkpoint-interval N to make it resumable)."
            )
        saved = json.loads(record.read_text(encoding="utf-8")).get("fingerprint") if record.is_file() else None
        if saved != fingerprint:
            raise ValueError(
                f"The interrupted revision in {str(work)!r} was started with another request, overlay, config or "
                "checkpoint, so resuming would mix two revisions. Rerun with exactly the same options, or pass "
                "--restart to discard it."
            )
        resumed_from = existing
        run_overrides["unlearn#resume_from"] = str(existing)
        logger.info("Resuming the interrupted revision from %s.", existing)
    elif existing is not None and not restart:
        raise FileExistsError(
            f"An interrupted revision left checkpoints in {str(work)!r}. Pass --resume to continue it, or --restart "
            "to discard them and start again."
        )
    elif restart:
        _remove_work_files(work)

    if request is not None:
        write_overlay(overlay, overlay_path)
    run_files = [*files, overlay_path] if overlay_path not in files else files

    summary = PreflightSummary()
    if preflight:
        summary = _preflight(run_files, meta, run_overrides, layout, rule, checkpoint_path)
        if summary.forget_samples is not None:
            logger.info(
                "Preflight: the rule selects %d of %d training samples; %d DICOM files checked.",
                summary.forget_samples,
                summary.training_samples,
                summary.dicom_files,
            )

    logging_path = _bundle_file(bundle, logging_file) if logging_file is not None else None
    if logging_path is not None and not logging_path.is_file():
        logging_path = None
    # A generated overlay runs its own list; a hand-written one runs the bundle's (usually "run").
    run_id = REVISE_RUN_ID if REVISE_RUN_ID in overlay else layout.run_id
    if run_id is None:
        raise BundleLayoutError(
            f"Neither the overlay nor the bundle has an expression list that runs {layout.trainer_id!r}; add "
            f'"{REVISE_RUN_ID}": ["$@{layout.trainer_id}.run()"] to the overlay.'
        )
    command = bundle_command(
        [_relative(f, bundle) for f in run_files],
        _relative(meta, bundle),
        _relative(logging_path, bundle) if logging_path else None,
        run_overrides,
        run_id=run_id,
    )
    result = RevisionResult(
        bundle_dir=bundle,
        layout=layout,
        overlay_file=overlay_path,
        command=command,
        checkpoint=checkpoint_path,
        original_sha256=original_sha256,
        previous_version=previous_version,
        preflight=summary,
        resumed_from=resumed_from,
    )
    if checkpoint_interval > 0:
        # Written for dry runs too, so that a run of the printed command can be resumed with revise(resume=True).
        atomic_write_json(record, {"fingerprint": fingerprint, "overlay": str(overlay_path)})
    if dry_run:
        return result

    logger.info("Running the revision: %s", " ".join(command))
    started = time.time()
    if in_process:
        _run_in_process(bundle, [str(f) for f in run_files], str(meta), run_overrides, run_id)
    else:
        code, lines = _run_subprocess(command, bundle, env, output, timeout)
        if code != 0:
            unchanged = sha256_file(checkpoint_path) == original_sha256
            state = "is unchanged" if unchanged else "CHANGED; restore it from its backup"
            raise RevisionError(
                f"The revision failed (exit code {code}): {_error_summary(lines)}\nThe checkpoint "
                f"{_relative(checkpoint_path, bundle)} {state}. Fix the cause and rerun"
                + (" with --resume to continue from the last checkpoint." if checkpoint_interval > 0 else ".")
                + "\nLast output lines:\n" + "\n".join(lines[-40:])
            )

    result.revised_sha256 = sha256_file(checkpoint_path)
    backups = sorted(checkpoint_path.parent.glob(f"{checkpoint_path.stem}.original-{original_sha256[:12]}*"))
    result.original_backup = backups[0] if backups else None
    report_file = bundle / "eval" / "unlearning" / "unlearning_report.json"
    if report_file.is_file() and report_file.stat().st_mtime >= started:
        result.report_file = report_file
    metadata = json.loads(meta.read_text(encoding="utf-8"))
    result.version = str(metadata.get("version"))
    if result.version == previous_version and result.revised_sha256 != original_sha256:
        result.version = _record_missing_revision(meta, rule, result, summary, version_bump, new_version)
    _remove_work_files(work)
    logger.info(
        "Revision complete: version %s -> %s, original kept as %s.", previous_version, result.version,
        result.original_backup,
    )
    return result
