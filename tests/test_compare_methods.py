"""The method comparison benchmark at its small setting: one real run, then checks of the page and the raw results.

Budget: 78 s measured on a shared 2-core machine under load (two tasks, one seed, every method, two epochs, one
pass per method; the original and the oracle are trained through the bundles).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import data_dir

REPOSITORY = Path(__file__).resolve().parents[1]
SCRIPT = REPOSITORY / "benchmarks" / "compare_methods.py"

sys.path.insert(0, str(REPOSITORY / "benchmarks"))
import compare_methods  # noqa: E402

#: Metrics that every row must have as a finite mean under both tasks.
REQUIRED_METRICS = (
    "forget_train_accuracy",
    "retain_accuracy",
    "test_accuracy",
    "mia_loss_threshold_auc",
    "mia_loss_logistic_auc",
    "mia_efficacy",
    "mia_entropy_efficacy",
    "gap_mean",
    "wall_seconds",
)
TABLE_TITLES = ("### Accuracy", "### Membership inference on the forget set", "### Gap to the oracle and cost")


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run the benchmark's small setting with one seed; return the page text and the raw results."""
    folder = tmp_path_factory.mktemp("compare_methods")
    output = folder / "results.md"
    environment = dict(
        os.environ,
        MONAI_UNLEARN_DATA=str(data_dir()),
        OMP_NUM_THREADS="1",
        PYTHONPATH=str(REPOSITORY),
        PYTHONWARNINGS="ignore",
    )
    # One seed, two epochs and one pass per method keep the run short; the tables have the structure of any setting.
    command = [sys.executable, str(SCRIPT), "--small", "--seeds", "1", "--epochs", "2", "--max-passes", "1"]
    command += ["--output", str(output)]
    command += ["--work-dir", str(folder / "work")]
    result = subprocess.run(command, cwd=REPOSITORY, env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"the small benchmark failed:\n{result.stdout[-2000:]}\n{result.stderr[-5000:]}"
    return {
        "page": output.read_text(encoding="utf-8"),
        "results": json.loads(output.with_suffix(".json").read_text(encoding="utf-8")),
    }


def _table_rows(page: str, task_title: str, table_title: str) -> list[str]:
    section = page.split(f"## {task_title}", 1)[1]
    table = section.split(table_title, 1)[1].strip().split("\n\n", 1)[0]
    header_lines = ("| method", "| ---")
    return [line for line in table.splitlines() if line.startswith("| ") and not line.startswith(header_lines)]


def test_page_has_every_table_per_task(small_run: dict):
    page = small_run["page"]
    for task in compare_methods.TASKS.values():
        assert f"## {task.title}" in page, f"the page lacks the section of task {task.name!r}"
        for title in TABLE_TITLES:
            rows = _table_rows(page, task.title, title)
            assert len(rows) == len(compare_methods.ALL_ROWS), (
                f"table {title!r} of task {task.name!r} has {len(rows)} rows, expected {len(compare_methods.ALL_ROWS)}"
            )


def test_page_names_every_method(small_run: dict):
    page = small_run["page"]
    for task in compare_methods.TASKS.values():
        rows = "\n".join(_table_rows(page, task.title, "### Gap to the oracle and cost"))
        for name in compare_methods.ALL_ROWS:
            assert f"{name}`" in rows or f"{name}*" in rows, f"task {task.name!r} has no row for {name!r}"


def test_page_records_command_and_machine(small_run: dict):
    page = small_run["page"]
    assert "python benchmarks/compare_methods.py --small --seeds 1" in page, "the page does not show its command"
    assert "- machine: " in page, "the page does not name the machine"
    assert "- date (UTC): " in page, "the page does not give the date"


def test_every_row_is_finite(small_run: dict):
    results = small_run["results"]
    assert results["rows"] == list(compare_methods.ALL_ROWS), f"unexpected rows {results['rows']}"
    for task_name, task_result in results["tasks"].items():
        for seed, seed_result in task_result["seeds"].items():
            for row in compare_methods.ALL_ROWS:
                values = seed_result["rows"][row]["values"]
                for metric in REQUIRED_METRICS:
                    value = values.get(metric)
                    assert isinstance(value, (int, float)) and math.isfinite(value), (
                        f"{task_name}, seed {seed}, {row}: {metric} is {value!r}, expected a finite number"
                    )


def test_oracle_is_its_own_reference(small_run: dict):
    for task_name, task_result in small_run["results"]["tasks"].items():
        for seed, seed_result in task_result["seeds"].items():
            gaps = seed_result["rows"]["oracle"]["gap"]["per_metric"]
            assert all(value == 0.0 for value in gaps.values()), f"{task_name}, seed {seed}: oracle gaps {gaps}"


def test_subset_task_has_no_heldout_forget_samples(small_run: dict):
    pneumonia = small_run["results"]["tasks"]["pneumonia"]
    for seed, seed_result in pneumonia["seeds"].items():
        value = seed_result["rows"]["original"]["values"]["forget_heldout_accuracy"]
        assert value is None, f"seed {seed}: held-out forget accuracy {value!r} under subset forgetting, expected None"


def test_aggregate_mean_and_sample_std():
    task_result = {
        "seeds": {
            0: {"rows": {"original": {"values": {"retain_accuracy": 0.8, "forget_heldout_accuracy": None}}}},
            1: {"rows": {"original": {"values": {"retain_accuracy": 1.0, "forget_heldout_accuracy": None}}}},
        }
    }
    table = compare_methods.aggregate(task_result, ["original"])
    mean, std = table["original"]["retain_accuracy"]
    assert mean == pytest.approx(0.9), f"mean {mean}, expected 0.9"
    assert std == pytest.approx(math.sqrt(0.02)), f"sample standard deviation {std}, expected sqrt(0.02)"
    assert "forget_heldout_accuracy" not in table["original"], "a metric that is None in every seed must be left out"
