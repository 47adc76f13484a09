# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Handler that evaluates the network before the revision, after each pass and after the revision.

It observes the unlearning trainer. At ``Events.STARTED`` it evaluates the trained network (the original) and, when an
oracle checkpoint is given, the retrain oracle with the same network definition and loaders. At
``Events.EPOCH_COMPLETED`` it evaluates the network after the pass (the forget and retain curves). At
``Events.COMPLETED`` it evaluates the revised network and, when requested, measures relearn times. The evaluations go
into the :class:`~monai_unlearn.handlers.EvaluationRecord` on ``engine.state``, where the membership inference handler
and the report read them.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.engines.utils import default_prepare_batch

from monai_unlearn.engines.unlearning_trainer import unwrap_network
from monai_unlearn.metrics.classification import evaluate_classifier
from monai_unlearn.metrics.mia import ATTACKS
from monai_unlearn.metrics.suite import EvaluationSuite, ModelEvaluation
from monai_unlearn.utils import load_checkpoint, sha256_file, state_dict_layout

from .evaluation_record import RECORD_ATTRIBUTE, EvaluationRecord

__all__ = ["UnlearningMetrics", "load_oracle_network", "RELEARN_DEFAULTS"]

#: Relearn settings used when ``relearn=True`` (see :func:`~monai_unlearn.metrics.relearn_time`).
RELEARN_DEFAULTS: dict[str, Any] = {
    "optimizer": "sgd",
    "learning_rate": 0.01,
    "momentum": 0.9,
    "batch_size": 32,
    "max_steps": 100,
    "tolerance": 0.0,
    "evaluate_every": 1,
    "batchnorm": "eval",
    "seed": 0,
}


def load_oracle_network(network: torch.nn.Module, checkpoint: str | os.PathLike) -> torch.nn.Module:
    """Return a copy of ``network`` (same definition) with the oracle checkpoint's weights, in eval mode.

    Raises:
        FileNotFoundError: when the checkpoint does not exist.
        ValueError: when it is not a weights-only checkpoint or does not fit the network.
    """
    weights = load_checkpoint(checkpoint)
    layout = state_dict_layout(weights)
    oracle = copy.deepcopy(unwrap_network(network))
    try:
        oracle.load_state_dict(weights if layout is None else weights[layout])
    except RuntimeError as error:
        raise ValueError(
            f"The oracle checkpoint {str(checkpoint)!r} does not fit the bundle's network "
            f"({str(error).splitlines()[0]}); train the oracle with the same network definition "
            "(python -m monai_unlearn.oracle, see docs/evaluation.md)."
        ) from error
    oracle.requires_grad_(False)
    return oracle.eval()


class _MethodPredictions(torch.nn.Module):
    """The trainer's network as its unlearning method presents it to handlers (``method.predict``).

    A method may change the network's outputs during the run: Boundary Expanding adds a shadow class until the run
    completes. Evaluating through ``method.predict`` gives the outputs the bundle's own handlers see. ``train()``
    and ``eval()`` reach the network because it is registered as a submodule.
    """

    def __init__(self, trainer: Engine) -> None:
        super().__init__()
        self.network = trainer.network  # type: ignore[attr-defined]
        self._trainer = [trainer]  # a list, so that the engine is not registered as a submodule

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        trainer = self._trainer[0]
        return trainer.method.predict(trainer, images)  # type: ignore[attr-defined]


def _short(metrics: Mapping[str, Any]) -> str:
    return ", ".join(f"{key} {value:.4f}" for key, value in metrics.items() if isinstance(value, float))


def _log_relearn(logger: logging.Logger, subject: str, relearn: dict[str, Any]) -> None:
    """Log the relearn time of a model, or that the forget metric did not come back within the step budget."""
    if relearn.get("steps") is None:
        logger.info("%s did not relearn the forget set within the step budget.", subject)
    else:
        logger.info("%s relearned the forget set in %s steps.", subject, relearn["steps"])


class UnlearningMetrics:
    """Evaluate the original, per-pass, revised and oracle networks on the forget, retain and test splits.

    Each evaluation is a :class:`~monai_unlearn.metrics.ModelEvaluation` of an
    :class:`~monai_unlearn.metrics.EvaluationSuite`: per-split summaries, per-sample outputs, and the headline metrics
    ``forget_train_<metric>``, ``forget_heldout_<metric>``, ``retain_<metric>``, ``test_<metric>`` and
    ``test_retain_<metric>``. After each pass the headline metrics are also put into ``engine.state.metrics``, so that
    other handlers (a stopping rule, ``StatsHandler``) can read them.

    Attach it after the handler that loads the trained weights (``CheckpointLoader``), so that the first evaluation
    uses them, and before :class:`~monai_unlearn.handlers.MembershipInference` and
    :class:`~monai_unlearn.handlers.UnlearningReport`.

    Note:
        The "original" is whatever network the engine has at ``STARTED``. A run resumed from a checkpoint of a
        partial revision therefore reports that partial revision as the original. Under ``torch.distributed`` each
        process evaluates its own loaders, so give every process the whole evaluation splits.

    Args:
        loaders: evaluation loaders by split name, with the forget flag on every sample and deterministic transforms.
            They must include ``train_split`` and ``heldout_split``.
        train_split: the split of training samples (its flagged samples are the forget set's training part).
        heldout_split: the held-out split (its flagged samples are the forget set's held-out part).
        forget_key: batch key of the forget flag.
        class_names: class names in index order, for per-class values.
        evaluate_fn: the task's evaluation (see :class:`~monai_unlearn.metrics.EvaluationSuite`).
        prepare_batch: function that extracts image and label from a batch, as in MONAI engines.
        metric: the metric's name in the summaries (``"accuracy"``, ``"dice"``).
        every_pass: evaluate after each pass (the curves); when False only before and after.
        oracle_checkpoint: weights of the retrain oracle for the same network definition; None for no oracle.
        relearn: measure relearn times of the revised model and the oracle: False (default) for no, True for
            :data:`RELEARN_DEFAULTS`, or a dict of settings of :func:`~monai_unlearn.metrics.relearn_time` that
            override them. The target is the original model's ``forget_train_<metric>``.
        network: the network to evaluate; None uses ``engine.network``.
        publish: put the record on ``engine.state`` for other handlers; the report sets it to False for a private
            instance.
        require_splits: raise when ``loaders`` lacks ``train_split`` or ``heldout_split``. When False the headline
            metrics of the missing splits are None and the per-split summaries are still computed.
        name: name of the handler's logger.

    Raises:
        ValueError: when ``loaders`` lacks the two splits (unless ``require_splits`` is False); at ``STARTED``, when
            the oracle checkpoint does not fit the network.
    """

    def __init__(
        self,
        loaders: Mapping[str, Iterable],
        train_split: str = "train",
        heldout_split: str = "test",
        forget_key: str = "forget",
        class_names: Sequence[str] | None = None,
        evaluate_fn: Callable = evaluate_classifier,
        prepare_batch: Callable = default_prepare_batch,
        metric: str = "accuracy",
        every_pass: bool = True,
        oracle_checkpoint: str | os.PathLike | None = None,
        relearn: bool | Mapping[str, Any] = False,
        network: torch.nn.Module | None = None,
        publish: bool = True,
        require_splits: bool = True,
        name: str = "UnlearningMetrics",
    ) -> None:
        missing = [split for split in (train_split, heldout_split) if split not in loaders]
        if missing and require_splits:
            raise ValueError(
                f"UnlearningMetrics got loaders {sorted(loaders)} without the splits {missing}; give a training split "
                "and a held-out split, or set train_split and heldout_split to their names."
            )
        self.suite = EvaluationSuite(
            loaders,
            train_split=train_split,
            heldout_split=heldout_split,
            evaluate_fn=evaluate_fn,
            forget_key=forget_key,
            class_names=class_names,
            prepare_batch=prepare_batch,
            metric=metric,
            attacks=() if missing else ATTACKS,
        )
        self.every_pass = bool(every_pass)
        self.oracle_checkpoint = Path(oracle_checkpoint) if oracle_checkpoint else None
        if relearn is True:
            self.relearn: dict[str, Any] | None = dict(RELEARN_DEFAULTS)
        elif relearn:
            self.relearn = {**RELEARN_DEFAULTS, **dict(relearn)}
        else:
            self.relearn = None
        self.network = network
        self.publish = publish
        self.logger = logging.getLogger(name)
        self.record = EvaluationRecord(suite=self.suite)

    def attach(self, engine: Engine) -> None:
        """Register the evaluations at STARTED, EPOCH_COMPLETED (when ``every_pass``) and COMPLETED."""
        engine.add_event_handler(Events.STARTED, self.evaluate_before)
        if self.every_pass:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self.evaluate_pass)
        engine.add_event_handler(Events.COMPLETED, self.evaluate_after)

    # ------------------------------------------------------------------------------------------------ helpers
    def _network(self, engine: Engine) -> torch.nn.Module:
        return self.network if self.network is not None else engine.network  # type: ignore[attr-defined]

    def _evaluated_network(self, engine: Engine) -> torch.nn.Module:
        if self.network is None and hasattr(getattr(engine, "method", None), "predict"):
            return _MethodPredictions(engine)
        return self._network(engine)

    @staticmethod
    def _device(engine: Engine) -> Any:
        return getattr(engine.state, "device", None) or "cpu"

    def _relearn(self, network: torch.nn.Module, engine: Engine) -> dict[str, Any] | None:
        original = self.record.original
        target = None if original is None else original.metrics.get(f"forget_train_{self.suite.metric}")
        if self.relearn is None or target is None:
            return None
        return self.suite.relearn(network, float(target), device=self._device(engine), **self.relearn).to_dict()

    def _oracle_info(self) -> dict[str, Any]:
        assert self.oracle_checkpoint is not None
        info: dict[str, Any] = {
            "checkpoint": str(self.oracle_checkpoint),
            "sha256": sha256_file(self.oracle_checkpoint),
        }
        # The oracle command keeps the bundle's training record beside the weights; it gives the retraining cost.
        training_record = self.oracle_checkpoint.parent / "training_time.json"
        if training_record.is_file():
            info["training"] = json.loads(training_record.read_text(encoding="utf-8"))
        return info

    # ------------------------------------------------------------------------------------------------ events
    def evaluate_before(self, engine: Engine) -> None:
        """Evaluate the original network and the oracle, and publish the record."""
        self.record = EvaluationRecord(suite=self.suite)
        if self.publish:
            setattr(engine.state, RECORD_ATTRIBUTE, self.record)
        network = self._network(engine)
        # The original's evaluation draws from the global random generators (one DataLoader base seed per split), as
        # UnlearningReport's own evaluation does; every later evaluation restores them. So the revision's random
        # stream, and its result, are the same whichever evaluation handlers are attached.
        self.record.original = self.suite.evaluate(
            self._evaluated_network(engine), self._device(engine), "original", attacks=False, keep_random_state=False
        )
        self.record.curves.append((0, self.record.original))
        self.logger.info("Original model: %s", _short(self.record.original.metrics))

        if self.oracle_checkpoint is not None:
            oracle = load_oracle_network(network, self.oracle_checkpoint).to(self._device(engine))
            self.record.oracle_info = self._oracle_info()
            self.record.oracle = self.suite.evaluate(oracle, self._device(engine), "oracle", attacks=False)
            self.logger.info("Retrain oracle: %s", _short(self.record.oracle.metrics))
            relearn = self._relearn(oracle, engine)
            if relearn is not None:
                self.record.relearn["oracle"] = relearn
                _log_relearn(self.logger, "The retrain oracle", relearn)
            del oracle

    def _evaluate_current(self, engine: Engine, name: str) -> ModelEvaluation:
        previous = self.record.latest
        evaluation = self.suite.evaluate(self._evaluated_network(engine), self._device(engine), name, attacks=False)
        if previous is not None and previous is not self.record.original and previous is not self.record.oracle:
            previous.drop_samples()
        return evaluation

    def evaluate_pass(self, engine: Engine) -> None:
        """Evaluate the network after a pass (the last pass is left to :meth:`evaluate_after`)."""
        if engine.state.epoch >= engine.state.max_epochs:
            return
        evaluation = self._evaluate_current(engine, f"pass {engine.state.epoch}")
        self.record.curves.append((int(engine.state.epoch), evaluation))
        engine.state.metrics.update({k: v for k, v in evaluation.metrics.items() if v is not None})
        self.logger.info("After pass %d: %s", engine.state.epoch, _short(evaluation.metrics))

    def evaluate_after(self, engine: Engine) -> None:
        """Evaluate the revised network, close the curves and measure its relearn time."""
        if self.record.original is None:
            raise RuntimeError(
                "UnlearningMetrics saw COMPLETED without STARTED; attach it to the trainer before run()."
            )
        evaluation = self._evaluate_current(engine, "revised")
        self.record.revised = evaluation
        if not self.record.curves or self.record.curves[-1][0] != int(engine.state.epoch):
            self.record.curves.append((int(engine.state.epoch), evaluation))
        engine.state.metrics.update({k: v for k, v in evaluation.metrics.items() if v is not None})
        self.logger.info("Revised model: %s", _short(evaluation.metrics))
        relearn = self._relearn(self._network(engine), engine)
        if relearn is not None:
            self.record.relearn["revised"] = relearn
            _log_relearn(self.logger, "The revised model", relearn)
