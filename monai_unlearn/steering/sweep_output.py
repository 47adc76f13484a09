# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""The sweep's results and their outputs: the table as CSV, Markdown and JSON, and the forget/retain plot.

:func:`~monai_unlearn.steering.run_sweep` fills a :class:`SweepResult`; this module writes it for people
(``sweep.md``, ``sweep.png``) and for scripts (``sweep.csv``, ``sweep.json``).
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monai_unlearn.utils import atomic_write_json, atomic_write_text

__all__ = ["SweepResult", "as_number", "plot_sweep", "write_tables"]


@dataclass
class SweepResult:
    """Rows of a sweep and the files written.

    Attributes:
        rows: one dict per model: the original, the oracle (when given) and each sweep point, with ``kind``,
            ``point``, the knob values, the headline and attack metrics, ``mean_gap``, ``forget_objective``,
            ``pareto`` and ``seconds``.
        knobs: the knob names of the grid.
        metric: the metric name (``accuracy`` or ``dice``).
        files: the written files by kind (``csv``, ``markdown``, ``json``, ``png``).
        weights: the revised weights' path of each sweep point, by point index.
        checkpoint: the original's weights the points revised.
        oracle: the oracle's weights, or None.
    """

    rows: list[dict[str, Any]]
    knobs: list[str]
    metric: str
    files: dict[str, Path] = field(default_factory=dict)
    weights: dict[int, Path] = field(default_factory=dict)
    checkpoint: Path | None = None
    oracle: Path | None = None

    def points(self) -> list[dict[str, Any]]:
        """Return the rows of the sweep points only."""
        return [row for row in self.rows if row["kind"] == "sweep"]

    def row(self, kind: str) -> dict[str, Any] | None:
        """Return the row of ``kind`` (``"original"`` or ``"oracle"``), or None."""
        return next((row for row in self.rows if row["kind"] == kind), None)


def as_number(value: Any) -> float:
    """Return ``value`` as a float, or NaN when it is not a number (None, a string, a bool)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _columns(result: SweepResult) -> list[str]:
    metric = result.metric
    return [
        "kind",
        "point",
        *result.knobs,
        f"forget_train_{metric}",
        f"forget_heldout_{metric}",
        f"retain_{metric}",
        f"test_{metric}",
        "mia_efficacy",
        "mia_loss_threshold_auc",
        "mean_gap",
        "forget_objective",
        "pareto",
        "seconds",
    ]


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def write_tables(result: SweepResult, output: Path) -> dict[str, Path]:
    """Write the sweep table as ``sweep.csv``, ``sweep.md`` and ``sweep.json`` in ``output``; return their paths."""
    columns = _columns(result)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in result.rows:
        writer.writerow({column: _format(row.get(column)) for column in columns})
    files = {"csv": atomic_write_text(output / "sweep.csv", buffer.getvalue())}

    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for row in result.rows:
        lines.append("| " + " | ".join(_format(row.get(column)) for column in columns) + " |")
    oracle_note = (
        "forget_objective is |forget_train - oracle forget_train|"
        if result.row("oracle") is not None
        else "forget_objective is forget_train (no oracle given)"
    )
    text = (
        f"# Sweep over {', '.join(result.knobs)}\n\n"
        f"Pareto front: lowest forget_objective and highest retain_{result.metric}; {oracle_note}. "
        "mean_gap is the mean gap to the oracle.\n\n" + "\n".join(lines) + "\n"
    )
    files["markdown"] = atomic_write_text(output / "sweep.md", text)
    serializable = [{key: value for key, value in row.items()} for row in result.rows]
    files["json"] = atomic_write_json(
        output / "sweep.json", {
            "knobs": result.knobs,
            "metric": result.metric,
            "checkpoint": str(result.checkpoint) if result.checkpoint else None,
            "oracle": str(result.oracle) if result.oracle else None,
            "rows": serializable,
        }
    )
    return files


def plot_sweep(result: SweepResult, path: str | os.PathLike) -> Path:
    """Plot the forget metric against the retain metric of every point, the Pareto front, the original and the oracle.

    Returns:
        The path of the written PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = result.metric
    forget_key, retain_key = f"forget_train_{metric}", f"retain_{metric}"
    figure, axes = plt.subplots(figsize=(6.5, 4.5))
    points = result.points()
    dominated = [row for row in points if not row["pareto"]]
    front = sorted((row for row in points if row["pareto"]), key=lambda row: as_number(row[forget_key]))
    axes.scatter([as_number(r[forget_key]) for r in dominated], [as_number(r[retain_key]) for r in dominated],
                 color="0.6", label="sweep point")
    axes.plot([as_number(r[forget_key]) for r in front], [as_number(r[retain_key]) for r in front], "o-",
              color="tab:red", label="Pareto front")
    for row in points:
        axes.annotate(str(row["point"]), (as_number(row[forget_key]), as_number(row[retain_key])), fontsize=7,
                      xytext=(3, 3), textcoords="offset points")
    for kind, marker, color in (("original", "s", "tab:blue"), ("oracle", "*", "tab:green")):
        row = result.row(kind)
        if row is not None:
            axes.scatter([as_number(row[forget_key])], [as_number(row[retain_key])], marker=marker, s=120, color=color,
                         label=kind, zorder=3)
    axes.set_xlabel(f"{forget_key} (forget set, training part)")
    axes.set_ylabel(f"{retain_key} (retain set)")
    axes.set_title(f"Sweep over {', '.join(result.knobs)}")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=120)
    plt.close(figure)
    return target
