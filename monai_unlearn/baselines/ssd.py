# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""SSD, selective synaptic dampening: shrink the weights that matter far more to the forget set than to all the data.

SSD needs no gradient step. In the flow transform -> engine -> inner search -> loss -> handlers, it does all its
work in :meth:`SSD.setup`, which the unlearning trainer calls at the start of the first pass, after the trained
weights are loaded and before the engine iterates the data:

1. Importances: the diagonal of the Fisher information of the frozen original network (eval mode), estimated from
   squared gradients of the cross-entropy on the true labels, over the full training data ``D`` (forget and retain
   samples) and over the forget set ``D_f``: ``I_D`` and ``I_Df``, one value per weight.
2. Dampening: every weight with ``I_Df > alpha * I_D`` is multiplied by ``beta = min(lambda * I_D / I_Df, 1)``; the
   other weights keep their value.

The method reports ``needs_optimizer_steps = False``, so the trainer ends the run right after setup: no optimizer
step is taken, and ``Events.COMPLETED`` still fires, so the bundle's saver and report handlers run as usual. The
pass budget (``max_epochs``) and the optimizer are not used.

``importance="sample"`` (default) averages squared per-sample gradients, the empirical Fisher of the definition;
``importance="batch"`` averages squared gradients of the batch-mean loss over batches, a cheaper estimate whose scale
depends on the batch size (both sets are measured with the same loader batch size, so the ratio ``I_Df / I_D``
stays comparable). The data go through the loaders' own transforms, random augmentations included.

For segmentation, a sample's loss is its mean voxel cross-entropy; for ``I_Df`` it covers the forget region of each
forget image (every voxel when whole images are forgotten).

Reference: J. Foster, S. Schoepf and A. Brintrup, "Fast Machine Unlearning Without Retraining Through Selective
Synaptic Dampening", AAAI 2024.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch

from monai_unlearn.engines.unlearning_trainer import unwrap_network
from monai_unlearn.methods import StepOutput, UnlearningBatch

from .common import (
    BaselineMethod,
    check_integer,
    check_number,
    forget_positions,
    functional_gradients,
    sample_cross_entropy,
    squared_sample_gradients,
)

if TYPE_CHECKING:
    from monai_unlearn.engines.unlearning_trainer import UnlearningTrainer

__all__ = ["SSD", "IMPORTANCE_ESTIMATES", "dampen"]

logger = logging.getLogger(__name__)

IMPORTANCE_ESTIMATES = ("sample", "batch")


@torch.no_grad()
def dampen(
    parameters: dict[str, torch.nn.Parameter],
    importance_all: dict[str, torch.Tensor],
    importance_forget: dict[str, torch.Tensor],
    alpha: float,
    dampening: float,
) -> tuple[int, int]:
    """Apply SSD's dampening in place and return (number of dampened weights, number of weights).

    A weight is dampened when ``I_Df > alpha * I_D``; it is multiplied by ``min(dampening * I_D / I_Df, 1)``.
    """
    dampened = 0
    total = 0
    for name, parameter in parameters.items():
        global_importance = importance_all[name].to(parameter.device)
        forget_importance = importance_forget[name].to(parameter.device)
        selected = forget_importance > alpha * global_importance
        factor = (dampening * global_importance / forget_importance.clamp_min(torch.finfo(torch.float32).tiny)).clamp(
            max=1.0
        )
        parameter.copy_(torch.where(selected, parameter * factor.to(parameter.dtype), parameter))
        dampened += int(selected.sum())
        total += parameter.numel()
    return dampened, total


class SSD(BaselineMethod):
    """Selective synaptic dampening of Foster et al. (AAAI 2024), run entirely in :meth:`setup`.

    Args:
        alpha: selection threshold: a weight is dampened when its forget importance exceeds ``alpha`` times its
            importance on the full training data. Default 10 (the paper's value for its ResNet18 experiments).
        dampening: ``lambda > 0`` of the dampening factor ``min(lambda * I_D / I_Df, 1)``. Default 1 (the paper's
            value for its ResNet18 experiments).
        importance: ``"sample"`` (default, squared per-sample gradients) or ``"batch"`` (squared batch gradients).
        chunk_size: with ``importance="sample"``, how many samples are differentiated at once; None takes the whole
            batch (fastest, most memory).

    Raises:
        ValueError: for a non-positive ``alpha`` or ``dampening``, an unknown importance estimate or a chunk size
            below 1; at setup, for an empty forget set.
    """

    name = "ssd"

    def __init__(
        self, alpha: float = 10.0, dampening: float = 1.0, importance: str = "sample", chunk_size: int | None = None
    ) -> None:
        super().__init__()
        if importance not in IMPORTANCE_ESTIMATES:
            raise ValueError(f"{self.name}: invalid importance {importance!r}; expected one of {IMPORTANCE_ESTIMATES}.")
        self.settings = {
            "alpha": check_number(self.name, "alpha", alpha, minimum=0.0, minimum_inclusive=False),
            "dampening": check_number(self.name, "dampening", dampening, minimum=0.0, minimum_inclusive=False),
            "importance": importance,
            "chunk_size": None if chunk_size is None else check_integer(self.name, "chunk_size", chunk_size, minimum=1),
        }
        self.statistics: dict[str, Any] = {}

    @property
    def uses_retain(self) -> bool:
        # The importance on the full training data needs the retain samples (and a retain loader with pairing="loaders").
        return True

    @property
    def needs_optimizer_steps(self) -> bool:
        return False

    def _squared_gradients(
        self, network: torch.nn.Module, batch: UnlearningBatch, targets: torch.Tensor, region: torch.Tensor | None
    ) -> tuple[dict[str, torch.Tensor], int]:
        """Return the summed squared gradients of one batch and the number of terms they sum."""
        if self.settings["importance"] == "sample":
            mask = torch.ones_like(targets, dtype=torch.bool) if region is None else region
            squared = squared_sample_gradients(
                network,
                lambda logits, target, positions: sample_cross_entropy(logits, target, positions).sum(),
                batch.images,
                targets,
                mask,
                chunk_size=self.settings["chunk_size"],
            )
            return squared, len(batch)

        def batch_loss(logits: torch.Tensor) -> torch.Tensor:
            return sample_cross_entropy(logits, targets, region).mean()

        gradients = functional_gradients(network, batch_loss, batch.images)
        return {name: gradient.pow(2) for name, gradient in gradients.items()}, 1

    @staticmethod
    def _add(totals: dict[str, Any], key: str, squared: dict[str, torch.Tensor], count: int) -> None:
        sums = totals[key]
        for name, value in squared.items():
            sums[name] = value if name not in sums else sums[name] + value
        totals[f"{key}_count"] += count

    def _accumulate(
        self, network: torch.nn.Module, batch: UnlearningBatch, forget_side: bool, totals: dict[str, Any]
    ) -> None:
        with torch.no_grad():
            logits = network(batch.images)
        targets = self.targets(batch, logits)
        squared, count = self._squared_gradients(network, batch, targets, None)
        self._add(totals, "all", squared, count)
        if not forget_side:
            return
        region = forget_positions(batch, logits)
        if region is not None:
            squared, count = self._squared_gradients(network, batch, targets, region)
        self._add(totals, "forget", squared, count)

    def setup(self, trainer: UnlearningTrainer) -> None:
        original = self.original(trainer)
        totals: dict[str, Any] = {"all": {}, "forget": {}, "all_count": 0, "forget_count": 0}
        forget_samples = retain_samples = 0
        for forget, retain in trainer.iterate_batches(retain=True):
            if forget is not None and len(forget) > 0:
                self._accumulate(original, forget, True, totals)
                forget_samples += len(forget)
            if retain is not None and len(retain) > 0:
                self._accumulate(original, retain, False, totals)
                retain_samples += len(retain)
        if forget_samples == 0:
            raise ValueError(f"{self.name}: the forget set is empty, so there is nothing to dampen.")
        if retain_samples == 0:
            logger.warning("SSD saw no retain sample: the full-data importance is the forget importance alone.")
        # I_D includes the forget terms, so I_D >= share * I_Df and no weight passes I_Df > alpha * I_D unless the
        # forget share of the terms is below 1 / alpha.
        share = totals["forget_count"] / totals["all_count"]
        if share * self.settings["alpha"] >= 1.0:
            logger.warning(
                "SSD cannot dampen any weight: the forget set is %.1f %% of the data, and a weight is selected only "
                "when its forget importance exceeds alpha = %g times its full-data importance, which needs a forget "
                "share below 1/alpha = %.1f %%. Lower alpha below %.3g.",
                100.0 * share,
                self.settings["alpha"],
                100.0 / self.settings["alpha"],
                1.0 / share,
            )
        importance_all = {k: v / totals["all_count"] for k, v in totals["all"].items()}
        importance_forget = {k: v / totals["forget_count"] for k, v in totals["forget"].items()}
        parameters = dict(unwrap_network(trainer.network).named_parameters())
        dampened, total = dampen(
            parameters, importance_all, importance_forget, self.settings["alpha"], self.settings["dampening"]
        )
        self.statistics = {
            "forget_samples": forget_samples,
            "retain_samples": retain_samples,
            "dampened_weights": dampened,
            "weights": total,
        }
        logger.info(
            "SSD importances from %d forget and %d retain samples: dampened %d of %d weights (%.3f %%).",
            forget_samples,
            retain_samples,
            dampened,
            total,
            100.0 * dampened / max(total, 1),
        )

    def compute_loss(
        self, trainer: UnlearningTrainer, forget: UnlearningBatch | None, retain: UnlearningBatch | None
    ) -> StepOutput:
        raise RuntimeError(
            f"{self.name} takes no outer step (needs_optimizer_steps is False); the trainer ends the run after setup."
        )

    def config(self) -> dict[str, Any]:
        return {"name": self.name, **self.settings, **self.statistics}

    def state_dict(self) -> dict[str, Any]:
        return {"statistics": dict(self.statistics)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.statistics = dict(state.get("statistics") or {})
