# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Shared parts of the benchmark scripts: machine and version records, tables, results pages, data and networks.

The scripts in this folder import it as ``common`` (Python puts the script's folder first on ``sys.path``). Every
results page records the exact command, the machine (CPU model, cores, torch threads, load average), the date and the
package versions, so that a reader can rerun it and judge how far the numbers carry.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

REPOSITORY = Path(__file__).resolve().parents[1]
MODALITY_BUNDLE = REPOSITORY / "bundles" / "modality_classifier"
RESULTS_DIR = REPOSITORY / "docs" / "benchmarks"

#: The small modality dataset of the test suite: a few images per class and split.
SMALL_MODALITY_SETTING = dict(
    chest_counts=(60, 20, 40),
    breast_counts=(60, 20, 40),
    max_hippocampus_cases=20,
    hippocampus_slices=(0.5,),
    max_dicom_files_per_vendor=30,
)


# ------------------------------------------------------------------------------------------------ machine and versions
def cpu_model() -> str:
    """Return the CPU model name from ``/proc/cpuinfo``, or the platform's processor string elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """Return the CPU model, logical cores, torch threads, load averages and the CUDA device, if any."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1_5_15_min": [round(value, 2) for value in load],
        "platform": platform.platform(),
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def package_versions() -> dict[str, str]:
    """Return the versions of Python and the packages the benchmarks run on, and the repository's commit."""
    import ignite
    import monai
    import numpy

    import monai_unlearn

    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "pytorch-ignite": ignite.__version__,
        "numpy": numpy.__version__,
        "monai_unlearn": monai_unlearn.__version__,
    }
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPOSITORY, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPOSITORY, capture_output=True, text=True
        ).stdout.strip()
        versions["repository commit"] = commit + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        versions["repository commit"] = "unknown"
    return versions


def command_line() -> str:
    """Return the command that started this script, as a shell line relative to the repository."""
    script = Path(sys.argv[0]).resolve()
    try:
        shown = str(script.relative_to(REPOSITORY))
    except ValueError:
        shown = str(script)
    return shlex.join(["python", shown, *sys.argv[1:]])


def set_threads(threads: int) -> None:
    """Use ``threads`` torch threads in this process and in the subprocesses it starts."""
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)


# ------------------------------------------------------------------------------------------------ tables and pages
@dataclass
class Table:
    """A table with named columns; cells are formatted when printed."""

    title: str
    columns: list[str]
    rows: list[list[Any]]

    def markdown(self) -> str:
        lines = ["| " + " | ".join(self.columns) + " |", "|" + " --- |" * len(self.columns)]
        for row in self.rows:
            lines.append("| " + " | ".join(format_cell(value) for value in row) + " |")
        return "\n".join(lines)


def format_cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value == 0 or 1e-3 <= abs(value) < 1e5:
            return f"{value:.4g}"
        return f"{value:.3e}"
    return str(value)


def print_tables(tables: Sequence[Table]) -> None:
    for table in tables:
        print(f"\n{table.title}\n")
        print(table.markdown())
    print()


def write_results_page(
    path: str | os.PathLike,
    title: str,
    summary: str,
    tables: Sequence[Table],
    notes: Sequence[str] = (),
    started: float | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a Markdown results page with the command, machine, date and versions, and a JSON copy beside it.

    Args:
        path: the ``.md`` file to write; the JSON copy gets the same stem.
        title: the page's heading.
        summary: a paragraph that says what was measured.
        tables: the result tables.
        notes: paragraphs after the tables (how to read them, targets met or missed, and why).
        started: ``time.time()`` at the start of the run, to record its duration.
        extra: more facts for the setup list (data sizes, settings).

    Returns:
        The path of the Markdown page.
    """
    page = Path(path)
    page.parent.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    versions = package_versions()
    now = datetime.datetime.now(datetime.timezone.utc)
    lines = [f"# {title}", "", summary, "", "## Setup", ""]
    lines.append(f"- Command (from the repository root): `{command_line()}`")
    lines.append(f"- Date: {now.isoformat(timespec='seconds')}")
    if started is not None:
        lines.append(f"- Duration of the run: {time.time() - started:.0f} s")
    lines.append(
        f"- Machine: {machine['cpu']}, {machine['logical_cores']} logical cores, {machine['torch_threads']} torch "
        f"thread(s), load average {machine['load_average_1_5_15_min']} (1, 5, 15 min) when the page was written"
    )
    if "cuda_device" in machine:
        lines.append(f"- CUDA device: {machine['cuda_device']}")
    lines.append("- Versions: " + ", ".join(f"{name} {value}" for name, value in versions.items()))
    for key, value in (extra or {}).items():
        lines.append(f"- {key}: {value}")
    for table in tables:
        lines += ["", f"## {table.title}", "", table.markdown()]
    if notes:
        lines += ["", "## Reading the results", ""]
        for note in notes:
            lines += [note, ""]
    page.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    record = {
        "title": title,
        "command": command_line(),
        "date": now.isoformat(timespec="seconds"),
        "machine": machine,
        "versions": versions,
        "setup": extra or {},
        "tables": [{"title": t.title, "columns": t.columns, "rows": t.rows} for t in tables],
    }
    page.with_suffix(".json").write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    return page


# ------------------------------------------------------------------------------------------------ data and network
def prepare_modality_data(work_dir: str | os.PathLike, small: bool, data_dir: str | None = None) -> Path:
    """Build the modality dataset (small or full) under ``work_dir/data`` unless it exists; return its datalist."""
    from monai_unlearn.data import build_modality_dataset

    folder = Path(work_dir) / ("data_small" if small else "data_full")
    datalist = folder / "datalist.json"
    if datalist.is_file():
        return datalist
    settings = SMALL_MODALITY_SETTING if small else {}
    return build_modality_dataset(folder, data_dir=data_dir, **settings)


def load_modality_split(datalist_path: str | os.PathLike, split: str = "training") -> tuple[torch.Tensor, torch.Tensor]:
    """Return a split's images ``(N, 1, 28, 28)`` in [0, 1] and labels ``(N,)``, loaded as the bundle loads them."""
    from monai.data import load_decathlon_datalist
    from monai.transforms import Compose, EnsureChannelFirstd, EnsureTyped, LoadImaged, Resized, ScaleIntensityd

    datalist_path = Path(datalist_path)
    entries = load_decathlon_datalist(
        str(datalist_path), is_segmentation=False, data_list_key=split, base_dir=str(datalist_path.parent)
    )
    load = Compose(
        [
            LoadImaged(keys="image", image_only=True),
            EnsureChannelFirstd(keys="image", channel_dim="no_channel"),
            ScaleIntensityd(keys="image", minv=0.0, maxv=1.0),
            Resized(keys="image", spatial_size=(28, 28), mode="area"),
            EnsureTyped(keys="image", dtype=torch.float32, track_meta=False),
        ]
    )
    loaded = [load(dict(entry)) for entry in entries]
    images = torch.stack([entry["image"] for entry in loaded])
    labels = torch.tensor([int(entry["label"]) for entry in loaded])
    return images, labels


def bundle_network(bundle: str | os.PathLike = MODALITY_BUNDLE) -> torch.nn.Module:
    """Build the network that the bundle's ``train.json`` defines (``network_def``), seeded, on the CPU."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(Path(bundle) / "configs" / "train.json"))
    torch.manual_seed(0)
    return parser.get_parsed_content("network_def")


def collate_batches(
    images: torch.Tensor, labels: torch.Tensor, flags: torch.Tensor, order: torch.Tensor, batch_size: int
) -> list[dict[str, torch.Tensor]]:
    """Return the samples of ``order`` as a list of collated batches with ``image``, ``label`` and ``forget`` keys."""
    batches = []
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        batches.append({"image": images[index], "label": labels[index], "forget": flags[index]})
    return batches


# ------------------------------------------------------------------------------------------------ processes and memory
def current_rss_bytes() -> int:
    """Return this process's resident set size now, from ``/proc/self/status`` (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not found in /proc/self/status; the memory measurements need Linux.")


def peak_rss_bytes() -> int:
    """Return this process's peak resident set size since it started (``ru_maxrss``, in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class ProcessResult:
    """Outcome of a command run by :func:`run_measured`."""

    command: list[str]
    returncode: int
    wall_seconds: float
    peak_rss_bytes: int
    stdout: str
    stderr: str


def run_measured(command: Sequence[str], cwd: str | os.PathLike, env: dict[str, str] | None = None) -> ProcessResult:
    """Run ``command`` and return its wall time and the peak RSS of that child process alone.

    The peak comes from ``os.wait4``, which returns the resource usage of the one child it reaps (``RUSAGE_CHILDREN``
    would give the maximum over all children so far).

    Raises:
        RuntimeError: when the command fails; the message carries the end of its error output.
    """
    import tempfile

    environment = dict(os.environ if env is None else env)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        process = subprocess.Popen(list(command), cwd=cwd, env=environment, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise RuntimeError(f"{shlex.join(list(command))} failed with exit code {process.returncode}:\n{stderr[-4000:]}")
    return ProcessResult(list(command), process.returncode, seconds, usage.ru_maxrss * 1024, stdout, stderr)


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else 0.5 * (ordered[middle - 1] + ordered[middle])


def interleaved_timings(candidates: dict[str, Callable[[], Any]], repeats: int) -> dict[str, dict[str, list[float]]]:
    """Time each candidate ``repeats`` times, alternating between them; return wall and CPU seconds of each run.

    Alternating spreads slow phases of a shared machine over all candidates instead of penalising one of them. The
    process CPU time (``time.process_time``) of a single-threaded run counts only the time this process computed,
    so it moves less than the wall time when other processes compete for the cores.
    """
    times: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": []} for name in candidates}
    for _ in range(repeats):
        for name, run in candidates.items():
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            times[name]["cpu"].append(time.process_time() - cpu)
            times[name]["wall"].append(time.perf_counter() - wall)
    return times
