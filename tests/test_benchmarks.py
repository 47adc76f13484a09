"""Smoke tests of the benchmark scripts: each one's --small setting runs and writes a table with the expected columns.

The timings themselves are not checked: speed and memory targets live in the results pages under docs/benchmarks,
never in tests. The GPU check is run here, on a machine without CUDA, to check its message. Budget: about 65 s of CPU
time on 2 cores, 115 s of wall time when other processes load them (the revision benchmark runs the bundle CLI twice,
the memory benchmark starts two fresh processes, and all reuse the small dataset of the suite).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPOSITORY = Path(__file__).resolve().parents[1]
BENCHMARKS = REPOSITORY / "benchmarks"

EXPECTED_COLUMNS = {
    "engine_overhead": ["setting", "overhead, wall", "overhead, CPU", "weights identical", "max abs weight difference"],
    "scaling": ["forget set size", "retain set size", "inner steps K", "mode", "seconds per pass (median)"],
    "memory": ["setting", "ratio to fine-tuning"],
    "revision_vs_retraining": [
        "run",
        "process wall time, s",
        "engine time, s",
        "peak RSS, MiB",
        "speed-up over retraining (engine)",
        "peak RSS ratio to retraining",
    ],
}


@pytest.fixture(scope="module")
def work_dir(modality_small: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A benchmark work folder whose small dataset is the suite's, so that no script builds it again."""
    folder = tmp_path_factory.mktemp("benchmarks")
    (folder / "data_small").symlink_to(modality_small["folder"], target_is_directory=True)
    return folder


def run_script(arguments: list[str]) -> subprocess.CompletedProcess:
    environment = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    return subprocess.run(
        arguments, cwd=REPOSITORY, env=environment, capture_output=True, text=True, timeout=600, check=False
    )


# NOTE: revision_vs_retraining.py --model segmenter has no smoke test here. Its small setting trains, retrains and
# revises the 3D hippocampus bundle, about 40 s of CPU time, which would take this file far past its budget.
@pytest.mark.parametrize("name", ["engine_overhead", "scaling", "memory", "revision_vs_retraining"])
def test_small_setting_writes_table(name: str, work_dir: Path, trained_zoo_bundle: Path):
    page = work_dir / f"{name}.md"
    arguments = [sys.executable, str(BENCHMARKS / f"{name}.py"), "--small", "--work-dir", str(work_dir)]
    arguments += ["--output", str(page)]
    if name == "revision_vs_retraining":
        arguments += ["--trained-bundle", str(trained_zoo_bundle)]

    result = run_script(arguments)

    assert result.returncode == 0, f"{name} --small failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    text = page.read_text()
    assert "- Command (from the repository root): `python benchmarks/" in text, "the page should give the command"
    assert "- Machine: " in text, "the page should describe the machine"
    assert "torch thread(s)" in text, "the page should give the number of torch threads"
    assert "load average" in text, "the page should give the load average of the shared machine"
    assert "- Versions: " in text, "the page should list the package versions"
    assert "torch " in text, "the page should give the torch version"
    record = json.loads(page.with_suffix(".json").read_text())
    columns = [column for table in record["tables"] for column in table["columns"]]
    for column in EXPECTED_COLUMNS[name]:
        assert column in columns, f"{name}: column {column!r} missing from {columns}"
    for table in record["tables"]:
        assert table["rows"], f"{name}: table {table['title']!r} has no rows"
        assert all(len(row) == len(table["columns"]) for row in table["rows"]), f"{name}: ragged table"
        header = "| " + " | ".join(table["columns"]) + " |"
        assert header in text, f"{name}: the Markdown page lacks the header of {table['title']!r}"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for machines without a CUDA device")
def test_gpu_check_without_cuda_explains_and_exits():
    environment = dict(os.environ, PYTHON=sys.executable)
    result = subprocess.run(
        ["bash", str(BENCHMARKS / "gpu_check.sh")], env=environment, capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 2, f"gpu_check.sh should exit with 2 without CUDA, got {result.returncode}"
    assert "no CUDA device available" in result.stderr, f"unexpected message: {result.stderr!r}"
    assert "nothing was run" in result.stderr, f"the message should say that nothing ran: {result.stderr!r}"
