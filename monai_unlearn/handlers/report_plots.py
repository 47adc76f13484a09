# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""PNG plots of the unlearning report: original, revised and oracle values per metric, and the curves over passes.

The figures are drawn with matplotlib's Agg canvas directly (``matplotlib.figure.Figure`` with
``FigureCanvasAgg``), so they render without a display and never change the process-wide matplotlib backend.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["MODEL_COLORS", "plot_metric_bars", "plot_pass_curves"]

#: Colour of each model in the plots.
MODEL_COLORS = {"original": "#7f7f7f", "revised": "#1f77b4", "oracle": "#2ca02c"}

_CURVE_STYLES = (
    ("forget_train", "forget set (training samples)", "#d62728", "-"),
    ("forget_heldout", "forget class or group (held-out samples)", "#ff7f0e", "--"),
    ("retain", "retain set", "#1f77b4", "-"),
    ("test_retain", "test set, retain samples", "#17becf", "--"),
)


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def plot_metric_bars(
    metrics: Mapping[str, Mapping[str, Any]], path: str | os.PathLike, title: str = "Original, revised and oracle"
) -> Path | None:
    """Draw grouped bars, one group per metric and one bar per model, and save them as PNG.

    Args:
        metrics: ``{metric: {model: value}}`` as in the report's ``metrics`` section; values in [0, 1] or None.
        path: the PNG file to write.
        title: the figure title.

    Returns:
        The path written, or None when no metric has a value.
    """
    names = [name for name, values in metrics.items() if any(isinstance(v, (int, float)) for v in values.values())]
    if not names:
        return None
    models = [model for model in MODEL_COLORS if any(model in metrics[name] for name in names)]
    models += sorted({model for name in names for model in metrics[name]} - set(models))
    figure = _figure(max(6.0, 0.9 * len(names) + 2.0), 4.5)
    axes = figure.add_subplot(1, 1, 1)
    width = 0.8 / max(len(models), 1)
    for index, model in enumerate(models):
        offset = (index - (len(models) - 1) / 2) * width
        # A metric the model lacks gets no bar, so that it cannot be read as a zero.
        bars = [(position + offset, metrics[name].get(model)) for position, name in enumerate(names)]
        bars = [(position, value) for position, value in bars if isinstance(value, (int, float))]
        axes.bar([p for p, _ in bars], [v for _, v in bars], width=width, label=model, color=MODEL_COLORS.get(model))
    axes.set_xticks(range(len(names)))
    axes.set_xticklabels([name.replace("_", " ") for name in names], rotation=35, ha="right", fontsize=8)
    axes.set_ylim(0.0, 1.05)
    axes.set_ylabel("value")
    axes.set_title(title)
    axes.legend(fontsize=8)
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    destination = Path(path)
    destination.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(destination, format="png")
    return destination


def plot_pass_curves(
    rows: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    metric: str = "accuracy",
    oracle: Mapping[str, Any] | None = None,
) -> Path | None:
    """Draw the forget and retain metrics over the passes (pass 0 is the original) and save them as PNG.

    Args:
        rows: ``{"pass": k, "<split>_<metric>": value, ...}`` rows, as in the report's ``curves`` section.
        path: the PNG file to write.
        metric: the metric's name (``"accuracy"``, ``"dice"``).
        oracle: the oracle's metrics; drawn as dotted horizontal lines in the curves' colours.

    Returns:
        The path written, or None when fewer than two passes have values.
    """
    if len(rows) < 2:
        return None
    figure = _figure(6.5, 4.5)
    axes = figure.add_subplot(1, 1, 1)
    drawn = False
    passes = [int(row["pass"]) for row in rows]
    for prefix, label, color, style in _CURVE_STYLES:
        key = f"{prefix}_{metric}"
        values = [row.get(key) for row in rows]
        points = [(p, v) for p, v in zip(passes, values) if isinstance(v, (int, float))]
        if len(points) < 2:
            continue
        axes.plot([p for p, _ in points], [v for _, v in points], style, marker="o", color=color, label=label)
        drawn = True
        if oracle is not None and isinstance(oracle.get(key), (int, float)):
            axes.axhline(float(oracle[key]), color=color, linestyle=":", linewidth=1)
    if not drawn:
        return None
    axes.set_xlabel("pass over the forget set (0 = original model)")
    axes.set_ylabel(metric)
    axes.set_ylim(-0.02, 1.02)
    axes.set_xticks(passes)
    title = "Forget and retain curves"
    axes.set_title(title + (" (dotted: retrain oracle)" if oracle is not None else ""))
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    destination = Path(path)
    destination.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(destination, format="png")
    return destination
