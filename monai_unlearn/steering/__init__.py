# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Steering the forget/retain trade-off after unlearning runs: composition, interpolation and knob sweeps.

- :func:`compose`: the feature extractor of one run with the head of another, optionally fine-tuned on the retain set;
- :func:`interpolate` and :func:`choose_alpha`: weights mixed between two runs, with the mixing weight chosen on a
  validation split to reach a forget level at the best retain level;
- :func:`run_sweep` (``python -m monai_unlearn.steering.sweep``): a grid over the method's knobs for a bundle and
  forget rule, with a table and a plot of forget against retain metric, its Pareto front and the oracle.

Composition follows Nahass et al., "Targeted Unlearning Using Perturbed Sign Gradient Methods With Applications On
Medical Images", arXiv:2505.21872 (2025).
"""

from __future__ import annotations

from .composition import FINETUNE_MODES, HeadSplit, compose, default_example_input, find_head
from .interpolation import DEFAULT_ALPHAS, AlphaChoice, choose_alpha, interpolate, interpolated_network
from .pareto import forget_objective, pareto_front
from .sweep import KNOB_KEYS, SweepResult, expand_grid, plot_sweep, run_sweep
from .weights import WeightSource, check_same_layout, load_state

__all__ = [
    "AlphaChoice",
    "DEFAULT_ALPHAS",
    "FINETUNE_MODES",
    "HeadSplit",
    "KNOB_KEYS",
    "SweepResult",
    "WeightSource",
    "check_same_layout",
    "choose_alpha",
    "compose",
    "default_example_input",
    "expand_grid",
    "find_head",
    "forget_objective",
    "interpolate",
    "interpolated_network",
    "load_state",
    "pareto_front",
    "plot_sweep",
    "run_sweep",
]
