# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Headline metrics of an unlearning evaluation and their gap to the retrain oracle.

The evaluation of a model on a training split and a held-out split, both tagged with the forget flag, gives per-split
summaries (see :func:`~monai_unlearn.metrics.evaluate_classifier`). :func:`headline_metrics` names the five numbers an
unlearning report leads with; :func:`oracle_gap` and :func:`compare_models` set them beside the retrain oracle's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["headline_metrics", "default_gap_metrics", "oracle_gap", "compare_models"]


def headline_metrics(
    summaries: Mapping[str, Mapping[str, Any]],
    train_split: str = "train",
    heldout_split: str = "test",
    metric: str = "accuracy",
) -> dict[str, float | None]:
    """Return the headline metrics from per-split summaries.

    With ``metric="accuracy"`` (``"dice"`` for segmentation, and so on) the keys are:

    - ``forget_train_accuracy``: on the forget set's training samples (the training split's flag-1 samples);
    - ``forget_heldout_accuracy``: on held-out samples of the forget class or group (the held-out split's flag-1
      samples), None when the held-out split has none;
    - ``retain_accuracy``: on the retain set (the training split's flag-0 samples);
    - ``test_accuracy``: on the whole held-out split;
    - ``test_retain_accuracy``: on the held-out split's flag-0 samples.

    The summaries must hold ``<metric>``, ``forget_<metric>`` and ``retain_<metric>``; a missing value becomes None.
    """
    train = summaries.get(train_split) or {}
    heldout = summaries.get(heldout_split) or {}
    return {
        f"forget_train_{metric}": train.get(f"forget_{metric}"),
        f"forget_heldout_{metric}": heldout.get(f"forget_{metric}"),
        f"retain_{metric}": train.get(f"retain_{metric}"),
        f"test_{metric}": heldout.get(metric),
        f"test_retain_{metric}": heldout.get(f"retain_{metric}"),
    }


def default_gap_metrics(metric: str = "accuracy") -> list[str]:
    """Return the metrics averaged into the mean gap to the oracle.

    They are the forget (training and held-out), retain and test values of ``metric``, the confidence SVC attack's
    MIA-efficacy and the loss-threshold attack's AUC. SalUn (Fan et al., ICLR 2024) averages the gaps of forget,
    retain and test accuracy and MIA-efficacy in the same way. The held-out forget value and the loss attack are added
    here because they expose a model that only suppresses the forgotten outputs.
    """
    return [
        f"forget_train_{metric}",
        f"forget_heldout_{metric}",
        f"retain_{metric}",
        f"test_{metric}",
        "mia_efficacy",
        "mia_loss_threshold_auc",
    ]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def oracle_gap(
    values: Mapping[str, Any], oracle: Mapping[str, Any], metrics: Sequence[str] | None = None
) -> dict[str, Any]:
    """Return the absolute difference from the oracle of each metric, and the mean over the chosen metrics.

    Args:
        values: a model's metrics by name.
        oracle: the retrain oracle's metrics by name.
        metrics: the metrics of the mean gap; None uses :func:`default_gap_metrics` for accuracy. Metrics that either
            side lacks (None or missing) are left out of the mean.

    Returns:
        ``{"per_metric": {name: |value - oracle|} for every metric both sides have, "mean": mean over the chosen
        metrics or None, "metrics": the names in the mean}``.
    """
    names = list(metrics) if metrics is not None else default_gap_metrics()
    per_metric = {
        name: abs(float(value) - float(oracle[name]))
        for name, value in values.items()
        if _is_number(value) and _is_number(oracle.get(name))
    }
    used = [name for name in names if name in per_metric]
    mean = sum(per_metric[name] for name in used) / len(used) if used else None
    return {"per_metric": per_metric, "mean": mean, "metrics": used}


def compare_models(
    models: Mapping[str, Mapping[str, Any]],
    reference: str = "oracle",
    gap_metrics: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Set the metrics of several models side by side and compute each model's gap to the reference.

    Args:
        models: metrics by model name, for example ``{"original": ..., "revised": ..., "oracle": ...}``.
        reference: name of the reference model (the retrain oracle).
        gap_metrics: metrics of the gap; see :func:`oracle_gap`.

    Returns:
        ``{"models": [names], "metrics": {metric: {model: value}}, "reference": reference or None,
        "gap": {model: oracle_gap(...)}}``; ``gap`` is empty when the reference is not among ``models``.
    """
    names: list[str] = []
    for values in models.values():
        names.extend(name for name in values if name not in names)
    table = {name: {model: values.get(name) for model, values in models.items()} for name in names}
    gap: dict[str, Any] = {}
    if reference in models:
        for model, values in models.items():
            if model != reference:
                gap[model] = oracle_gap(values, models[reference], gap_metrics)
    return {
        "models": list(models),
        "metrics": table,
        "reference": reference if reference in models else None,
        "gap": gap,
    }
