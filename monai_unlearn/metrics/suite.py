# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""One evaluation protocol for every model of a comparison: the original, the revised model and the retrain oracle.

An :class:`EvaluationSuite` contains the evaluation loaders by split name (a training split and a held-out split, both
tagged with the forget flag) and the task's evaluation function. It evaluates any network into a
:class:`ModelEvaluation` (per-sample outputs, per-split summaries, headline metrics, membership inference attacks),
and :meth:`EvaluationSuite.compare` sets several evaluations beside the oracle's. The handlers use it during a
revision; scripts that compare methods use it directly::

    suite = EvaluationSuite({"train": train_loader, "test": test_loader}, class_names=names)
    evaluations = {name: suite.evaluate(net, device, name) for name, net in networks.items()}
    comparison = suite.compare(evaluations, reference="oracle")
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from monai.engines.utils import default_prepare_batch

from .classification import evaluate_classifier
from .comparison import compare_models, default_gap_metrics, headline_metrics
from .mia import ATTACKS, AttackResult, attack_summary, run_attacks
from .relearn import RelearnResult, relearn_time

__all__ = ["ModelEvaluation", "EvaluationSuite", "preserve_random_state"]


@contextlib.contextmanager
def preserve_random_state() -> Iterator[None]:
    """Restore the global random states of torch (CPU and CUDA), NumPy and Python when the block ends.

    Iterating a ``DataLoader`` without its own generator draws its base seed from torch's global generator. Without
    this, an evaluation between two passes would change the order in which the training loader shuffles, and the
    revision would depend on whether evaluation handlers are attached.

    Note:
        The own random states of MONAI's randomizable transforms are not restored; evaluation loaders should use
        deterministic transforms only.
    """
    torch_state = torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    numpy_state = np.random.get_state()
    python_state = random.getstate()
    try:
        yield
    finally:
        torch.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
        np.random.set_state(numpy_state)
        random.setstate(python_state)


@dataclass
class ModelEvaluation:
    """Evaluation of one network on every split of a suite.

    Attributes:
        name: the model's role, such as ``"original"``, ``"revised"``, ``"oracle"`` or ``"pass 2"``.
        splits: the evaluation object of each split (for classification a
            :class:`~monai_unlearn.metrics.ClassifierEvaluation`), with per-sample outputs and a ``summary`` dict.
        metrics: headline metrics (see :func:`~monai_unlearn.metrics.headline_metrics`) and, once attacks ran, the
            ``mia_*`` values of :func:`~monai_unlearn.metrics.mia.attack_summary`.
        mia: membership inference attack results by attack name.
    """

    name: str
    splits: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    mia: dict[str, AttackResult] = field(default_factory=dict)

    def drop_samples(self) -> None:
        """Replace the per-split evaluations by their summaries, freeing the per-sample outputs."""
        self.splits = {
            split: SimpleNamespace(summary=dict(evaluation.summary)) for split, evaluation in self.splits.items()
        }

    def summaries(self) -> dict[str, dict[str, Any]]:
        """Return each split's summary dict."""
        return {split: dict(evaluation.summary) for split, evaluation in self.splits.items()}

    def to_dict(self) -> dict[str, Any]:
        """Return the evaluation without per-sample outputs, as plain JSON-ready values."""
        return {
            "name": self.name,
            "metrics": dict(self.metrics),
            "splits": self.summaries(),
            "mia": {attack: result.to_dict() for attack, result in self.mia.items()},
        }


class EvaluationSuite:
    """Evaluate networks on named splits with one protocol, run the attacks, and compare against the oracle.

    Args:
        loaders: evaluation loaders by split name. They must include ``train_split`` and ``heldout_split``, and their
            samples must carry the forget flag (tag them with :class:`~monai_unlearn.transforms.TagForgetd`, with the
            rule of the revision). Use deterministic transforms: random augmentation would change the per-sample
            losses the attacks read.
        train_split: the split of training samples (forget and retain set).
        heldout_split: the split of samples no model trained on (its flagged samples are the held-out forget part).
        evaluate_fn: the task's evaluation, called as ``evaluate_fn(network, loader, device, forget_key, class_names,
            prepare_batch)``. It returns an object with per-sample ``losses`` and ``flags`` (and ``confidences``,
            ``entropies`` and ``labels`` where the task has them) and a ``summary`` dict holding ``<metric>``,
            ``forget_<metric>`` and ``retain_<metric>``. :func:`~monai_unlearn.metrics.evaluate_classifier` by default.
        forget_key: batch key of the forget flag.
        class_names: class names in index order, for per-class values.
        prepare_batch: function that extracts image and label from a batch, as in MONAI engines.
        metric: the metric's name in the summaries (``"accuracy"``, or ``"dice"`` for segmentation).
        attacks: membership inference attacks to run (names from :data:`~monai_unlearn.metrics.mia.ATTACKS`);
            empty to run none.
        attack_seed: seed of the attacks' folds and subsampling.
        attack_folds: cross-validation folds of the loss attacks.
        svc_non_members: shadow non-members of the SVC attacks: ``"all"`` held-out samples or only the ``"retain"``
            ones.
        gap_metrics: metrics of the mean gap to the oracle; None uses
            :func:`~monai_unlearn.metrics.default_gap_metrics` of ``metric``.

    Raises:
        ValueError: when ``loaders`` lacks ``train_split`` or ``heldout_split``.
    """

    def __init__(
        self,
        loaders: Mapping[str, Iterable],
        train_split: str = "train",
        heldout_split: str = "test",
        evaluate_fn: Callable = evaluate_classifier,
        forget_key: str = "forget",
        class_names: Sequence[str] | None = None,
        prepare_batch: Callable = default_prepare_batch,
        metric: str = "accuracy",
        attacks: Sequence[str] = ATTACKS,
        attack_seed: int = 0,
        attack_folds: int = 5,
        svc_non_members: str = "all",
        gap_metrics: Sequence[str] | None = None,
    ) -> None:
        if not loaders:
            raise ValueError("EvaluationSuite needs at least one evaluation loader, got none.")
        missing = [split for split in (train_split, heldout_split) if split not in loaders]
        if missing and attacks:
            raise ValueError(
                f"The evaluation loaders {sorted(loaders)} lack the splits {missing} that membership inference needs; "
                "give a training split and a held-out split, set train_split and heldout_split to their names, or "
                "pass attacks=()."
            )
        unknown = [name for name in attacks if name not in ATTACKS]
        if unknown:
            raise ValueError(f"Unknown membership inference attacks {unknown}: expected names from {list(ATTACKS)}.")
        self.loaders = dict(loaders)
        self.train_split = train_split
        self.heldout_split = heldout_split
        self.evaluate_fn = evaluate_fn
        self.forget_key = forget_key
        self.class_names = list(class_names) if class_names is not None else None
        self.prepare_batch = prepare_batch
        self.metric = metric
        self.attacks = tuple(attacks)
        self.attack_seed = int(attack_seed)
        self.attack_folds = int(attack_folds)
        self.svc_non_members = svc_non_members
        self.gap_metrics = list(gap_metrics) if gap_metrics is not None else default_gap_metrics(metric)

    def evaluate(
        self,
        network: torch.nn.Module,
        device: str | torch.device = "cpu",
        name: str = "model",
        attacks: bool = True,
        keep_random_state: bool = True,
    ) -> ModelEvaluation:
        """Evaluate ``network`` on every split and, unless ``attacks`` is False, run the attacks.

        The evaluation runs in eval mode without gradients, and the network's train/eval mode is restored afterwards.
        With ``keep_random_state`` the global random states are restored too (see :func:`preserve_random_state`), so
        that evaluating between two passes leaves the revision unchanged.
        """
        context = preserve_random_state() if keep_random_state else contextlib.nullcontext()
        with context:
            splits = {
                split: self.evaluate_fn(network, loader, device, self.forget_key, self.class_names, self.prepare_batch)
                for split, loader in self.loaders.items()
            }
        evaluation = ModelEvaluation(name=name, splits=splits)
        evaluation.metrics = headline_metrics(evaluation.summaries(), self.train_split, self.heldout_split, self.metric)
        if attacks:
            self.attack(evaluation)
        return evaluation

    def attack(self, evaluation: ModelEvaluation, **settings: Any) -> ModelEvaluation:
        """Run membership inference attacks on an evaluation's per-sample outputs; fill its ``mia`` and ``mia_*``
        metrics.

        Args:
            evaluation: an evaluation made by :meth:`evaluate` (with its per-sample outputs).
            settings: overrides of the suite's ``attacks``, ``folds``, ``seed``, ``svc_non_members`` and
                ``max_samples_per_side`` (see :func:`~monai_unlearn.metrics.run_attacks`).

        Raises:
            ValueError: when the suite has no training or held-out split, or the evaluation lacks them.
        """
        options = {
            "attacks": self.attacks,
            "folds": self.attack_folds,
            "seed": self.attack_seed,
            "svc_non_members": self.svc_non_members,
            **settings,
        }
        if not options["attacks"]:
            return evaluation
        missing = [split for split in (self.train_split, self.heldout_split) if split not in evaluation.splits]
        if missing:
            raise ValueError(
                f"Membership inference needs the splits {missing}, which the evaluation {evaluation.name!r} lacks "
                f"(it has {sorted(evaluation.splits)}); set train_split and heldout_split to the loaders' names."
            )
        if not hasattr(evaluation.splits[self.train_split], "losses"):
            raise ValueError(
                f"The evaluation {evaluation.name!r} kept no per-sample outputs; attack it before they are dropped."
            )
        evaluation.mia = run_attacks(
            evaluation.splits[self.train_split], evaluation.splits[self.heldout_split], **options
        )
        evaluation.metrics.update(attack_summary(evaluation.mia))
        return evaluation

    def relearn(
        self, network: torch.nn.Module, target: float, device: str | torch.device = "cpu", **settings: Any
    ) -> RelearnResult:
        """Measure the relearn time of ``network`` on the training split's forget samples; see
        :func:`~monai_unlearn.metrics.relearn_time` for ``settings``."""
        with preserve_random_state():
            return relearn_time(
                network,
                self.loaders[self.train_split],
                target,
                device=device,
                forget_key=self.forget_key,
                prepare_batch=self.prepare_batch,
                **settings,
            )

    def compare(
        self, evaluations: Mapping[str, ModelEvaluation | Mapping[str, Any]], reference: str = "oracle"
    ) -> dict[str, Any]:
        """Set the metrics of several evaluations side by side with each one's gap to ``reference``.

        See :func:`~monai_unlearn.metrics.compare_models` for the returned dictionary. Per-class values are added
        under ``per_class``: ``{split: {class: {model: value}}}``.
        """
        metrics = {
            name: (value.metrics if isinstance(value, ModelEvaluation) else dict(value))
            for name, value in evaluations.items()
        }
        comparison = compare_models(metrics, reference=reference, gap_metrics=self.gap_metrics)
        per_class: dict[str, dict[str, dict[str, Any]]] = {}
        key = f"per_class_{self.metric}"
        for model, value in evaluations.items():
            if not isinstance(value, ModelEvaluation):
                continue
            for split, summary in value.summaries().items():
                for class_name, class_value in (summary.get(key) or {}).items():
                    per_class.setdefault(split, {}).setdefault(class_name, {})[model] = class_value
        comparison["per_class"] = per_class
        return comparison
