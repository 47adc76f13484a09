"""Tests of the knob sweep: the Pareto front and the sweep command on the small trained modality bundle.

Budget: about 40 s on one thread after the session's trained bundle exists (the sweep command revises it twice).
"""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import copy_trained_bundle, run_bundle_cli
from monai_unlearn.steering import expand_grid, forget_objective, pareto_front, run_sweep
from monai_unlearn.steering.combine import choose_parents
from monai_unlearn.steering.sweep import _annotate
from monai_unlearn.utils import sha256_file

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_pareto_front_marks_non_dominated_runs():
    forget = [0.0, 0.0, 0.1, 0.3, 0.3, 0.5]
    retain = [0.6, 0.8, 0.9, 0.9, 0.95, 0.7]
    # Run 0 is dominated by run 1, run 3 by run 2, run 5 by runs 2, 3 and 4.
    assert pareto_front(forget, retain) == [False, True, True, False, True, False]


def test_pareto_front_ignores_nan_runs():
    assert pareto_front([0.1, math.nan], [0.9, 1.0]) == [True, False], "a NaN run must not enter or block the front"


def test_pareto_front_length_mismatch_raises():
    with pytest.raises(ValueError, match="got 2 forget values but 1 retain values"):
        pareto_front([0.1, 0.2], [0.9])


def test_forget_objective_is_distance_to_oracle():
    assert forget_objective(0.3, 0.1) == pytest.approx(0.2), "with an oracle the objective is |forget - oracle|"
    assert forget_objective(0.0, 0.1) == pytest.approx(0.1), "forgetting below the oracle is a gap too"
    assert forget_objective(0.3) == pytest.approx(0.3), "without an oracle the objective is the forget metric"


def test_annotate_uses_oracle_for_front_and_gap():
    rows = [
        {"kind": "oracle", "forget_train_accuracy": 0.1, "retain_accuracy": 0.9},
        {"kind": "sweep", "point": 0, "forget_train_accuracy": 0.0, "retain_accuracy": 0.9},
        {"kind": "sweep", "point": 1, "forget_train_accuracy": 0.1, "retain_accuracy": 0.9},
    ]
    _annotate(rows, "accuracy", ["forget_train_accuracy", "retain_accuracy"])
    assert [row["pareto"] for row in rows[1:]] == [False, True], "the point at the oracle's forget level should win"
    assert rows[1]["mean_gap"] == pytest.approx(0.05), "mean gap of point 0 should be (0.1 + 0) / 2"


def test_expand_grid_combines_values():
    points = expand_grid({"retain_weight": [0, 1], "learning_rate": [1e-4]})
    assert points == [{"retain_weight": 0, "learning_rate": 1e-4}, {"retain_weight": 1, "learning_rate": 1e-4}]


def test_unknown_knob_raises(tmp_path):
    with pytest.raises(ValueError, match="Unknown sweep knob 'noise_level'"):
        run_sweep(tmp_path, {"noise_level": [0.1]})


def test_knob_without_values_raises(tmp_path):
    with pytest.raises(ValueError, match="Sweep knob 'noise_scale' needs a non-empty list of values"):
        run_sweep(tmp_path, {"noise_scale": []})


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def sweep_run(trained_zoo_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run the sweep command on a copy of the trained bundle; return the copy, the output folder and the result."""
    folder = tmp_path_factory.mktemp("sweep")
    bundle = copy_trained_bundle(trained_zoo_bundle, folder / "bundle")
    original_sha256 = sha256_file(bundle / "models" / "model.pt")
    command = [
        sys.executable, "-m", "monai_unlearn.steering.sweep", "--bundle-root", str(bundle),
        "--grid", "retain_weight=0,1", "--grid", "passes=1",
        "--override", "batch_size=16", "--override", "unlearn#learning_rate=0.001",
        "--attacks", "", "--output-dir", str(bundle / "eval" / "sweep"),
    ]
    environment = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=600)
    return {"bundle": bundle, "output": bundle / "eval" / "sweep", "sha256": original_sha256, "result": result}


def test_sweep_command_writes_table_plot_and_front(sweep_run: dict):
    result, bundle, original_sha256 = sweep_run["result"], sweep_run["bundle"], sweep_run["sha256"]
    assert result.returncode == 0, f"the sweep command failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"

    output = sweep_run["output"]
    for name in ("sweep.csv", "sweep.md", "sweep.json", "weights/point_000.pt", "weights/point_001.pt"):
        assert (output / name).is_file(), f"the sweep did not write {name}"
    assert (output / "sweep.png").read_bytes()[:8] == PNG_SIGNATURE, "sweep.png is not a PNG image"
    assert sha256_file(bundle / "models" / "model.pt") == original_sha256, "the sweep changed the original checkpoint"

    rows = read_csv(output / "sweep.csv")
    assert [row["kind"] for row in rows] == ["original", "sweep", "sweep"], f"unexpected rows {rows}"
    points = rows[1:]
    assert [row["retain_weight"] for row in points] == ["0", "1"], "the rows should follow the grid's order"
    forget = [float(row["forget_train_accuracy"]) for row in points]
    retain = [float(row["retain_accuracy"]) for row in points]
    assert forget[0] < float(rows[0]["forget_train_accuracy"]), "a revision should lower the forget accuracy"
    expected = [
        not any(
            forget[j] <= forget[i] and retain[j] >= retain[i] and (forget[j] < forget[i] or retain[j] > retain[i])
            for j in range(len(points))
        )
        for i in range(len(points))
    ]
    assert [row["pareto"] == "yes" for row in points] == expected, f"wrong Pareto flags for {forget}, {retain}"
    assert "| sweep | 1 | 1 |" in (output / "sweep.md").read_text(), "the Markdown table lacks point 1"


def test_choose_parents_best_retain_and_forget():
    rows = [
        {"kind": "original", "point": None, "retain_accuracy": 1.0, "forget_objective": 1.0},
        {"kind": "sweep", "point": 0, "retain_accuracy": 0.99, "forget_objective": 0.10},
        {"kind": "sweep", "point": 1, "retain_accuracy": 0.50, "forget_objective": 0.01},
        {"kind": "sweep", "point": 2, "retain_accuracy": 0.99, "forget_objective": 0.05},
    ]
    # Points 0 and 2 tie on retain; the lower forget objective (point 2) is parent A. Point 1 forgets best.
    assert choose_parents(rows) == (2, 1), "parent A should retain best and parent B forget best"


def test_choose_parents_needs_two_points():
    with pytest.raises(ValueError, match="at least two points, got 1"):
        choose_parents([{"kind": "sweep", "point": 0, "retain_accuracy": 1.0, "forget_objective": 0.0}])


def test_compose_overlay_runs_bundle_cli(sweep_run: dict):
    assert sweep_run["result"].returncode == 0, "the sweep command failed; see the sweep test"
    bundle = sweep_run["bundle"]
    arguments = [
        "run", "--config_file", "['configs/train.json','configs/evaluate.json','configs/compose.json']",
        "--meta_file", "configs/metadata.json", "--logging_file", "configs/logging.conf",
        "--steering#extractor_from", "eval/sweep/weights/point_001.pt",
        "--steering#head_from", "eval/sweep/weights/point_000.pt",
    ]
    result = run_bundle_cli(bundle, arguments)
    log = result.stdout + result.stderr
    expected = "Composed DenseNet: extractor from 'eval/sweep/weights/point_001.pt'"
    assert expected in log, f"the log shows no composition:\n{log[-2000:]}"
    assert "Restored all variables" not in log, "the evaluation loaded models/model.pt over the composed network"
    assert (bundle / "eval" / "metrics.csv").is_file(), "the evaluation wrote no metrics.csv"


def test_invalid_knob_value_names_point(sweep_run: dict, single_torch_thread):
    with pytest.raises(ValueError, match=r"Sweep point 0 with \{'noise': 'gaussian'\} failed: Invalid noise law"):
        run_sweep(sweep_run["bundle"], {"noise": ["gaussian"]}, output_dir=sweep_run["output"] / "invalid", attacks=())
