# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Boundary Expanding: train the forget samples into a temporary shadow class, then remove the shadow class.

In the flow transform -> engine -> inner search -> loss -> handlers, Boundary Expanding replaces the inner search of
its sibling Boundary Shrink with a fixed target. At the first outer step the network's output layer (the last linear
layer of a classifier, the last convolution of a segmenter) gets one extra output channel, the shadow class, in
place. Each outer step then minimises the cross-entropy of the forget samples towards the shadow class on the
expanded network; for segmentation the voxels of the forget region go to the shadow class and the other voxels keep
their ground-truth labels. When the run completes, the shadow channel is cut off again, so the revised network has
its original output size and checkpoint layout, and the forget samples land on whichever real class the expanded
training pushed them towards.

Reference: M. Chen, W. Gao, G. Liu, K. Peng and C. Wang, "Boundary Unlearning: Rapid Forgetting of Deep Networks via
Shifting the Decision Boundary", CVPR 2023 (Boundary Expanding).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch

from monai_unlearn.engines.unlearning_trainer import unwrap_network
from monai_unlearn.methods import StepOutput, UnlearningBatch

from .common import BaselineMethod, forget_positions, position_cross_entropy
from .output_layer import OutputLayer, find_output_layer, resize_output_channels

if TYPE_CHECKING:
    from monai_unlearn.engines.unlearning_trainer import UnlearningTrainer

__all__ = ["BoundaryExpanding"]

logger = logging.getLogger(__name__)


class BoundaryExpanding(BaselineMethod):
    """Boundary Expanding of Chen et al. (CVPR 2023): a shadow output channel trained on the forget set, then removed.

    Args:
        layer_name: name of the output layer in ``network.named_modules()``; None finds it by running the frozen
            original on the first forget batch (the last linear or convolution layer whose output has the network's
            output shape).

    Raises:
        ValueError: at the first outer step, when the output layer cannot be found (see
            :func:`~monai_unlearn.baselines.output_layer.find_output_layer`), when the network is wrapped in
            ``DistributedDataParallel`` (which does not allow resizing a layer), or when the expanded network does not
            output one more channel.

    Note:
        The network has the extra channel between the first outer step and the end of the run: a checkpoint saved in
        between contains the expanded layer and does not load into the original network, so such a run cannot be
        resumed from a mid-run checkpoint. The frozen original keeps its original size.
    """

    name = "boundary_expanding"

    def __init__(self, layer_name: str | None = None) -> None:
        super().__init__()
        if layer_name is not None and not isinstance(layer_name, str):
            raise ValueError(f"{self.name}: layer_name must be a layer name (str) or None, got {layer_name!r}.")
        self.settings = {"layer_name": layer_name}
        self.layer: OutputLayer | None = None

    @property
    def expanded(self) -> bool:
        """Whether the network currently carries the shadow channel."""
        return self.layer is not None

    def _expand(self, trainer: UnlearningTrainer, images: torch.Tensor) -> None:
        if isinstance(trainer.network, torch.nn.parallel.DistributedDataParallel):
            raise ValueError(
                f"{self.name} resizes the network's output layer in place, which DistributedDataParallel does not "
                "allow; run it in a single process."
            )
        found = find_output_layer(self.original(trainer), images, self.settings["layer_name"], method=self.name)
        layer = dict(unwrap_network(trainer.network).named_modules())[found.name]
        resize_output_channels(layer, found.out_channels + 1, generator=trainer.generator)
        self.layer = OutputLayer(name=found.name, module=layer, out_channels=found.out_channels)
        logger.info(
            "Boundary Expanding added shadow class %d to layer %r (%d -> %d output channels).",
            found.out_channels,
            found.name,
            found.out_channels,
            found.out_channels + 1,
        )

    def compute_loss(
        self, trainer: UnlearningTrainer, forget: UnlearningBatch | None, retain: UnlearningBatch | None
    ) -> StepOutput:
        if forget is None or len(forget) == 0:
            raise ValueError(f"{self.name}: an outer step got no forget sample; check the forget loader.")
        if self.layer is None:
            self._expand(trainer, forget.images)
        classes = self.layer.out_channels
        logits = trainer.network(forget.images)
        if logits.shape[1] != classes + 1:
            raise ValueError(
                f"{self.name}: after adding a channel to layer {self.layer.name!r} the network outputs "
                f"{logits.shape[1]} channels instead of {classes + 1}; give the right output layer as layer_name."
            )
        real_logits = logits[:, :classes]
        region = forget_positions(forget, real_logits)
        shadow = torch.full_like(self.targets(forget, real_logits), classes)
        targets = shadow if region is None else torch.where(region, shadow, self.targets(forget, real_logits))
        loss = position_cross_entropy(logits, targets)
        with torch.no_grad():
            on_shadow = (logits.argmax(dim=1) == classes).float()
            covered = on_shadow if region is None else on_shadow[region]
            shadow_rate = float(covered.mean()) if covered.numel() else 0.0
        return StepOutput(
            loss=loss,
            forget_logits=real_logits,
            metrics={"forget_loss": float(loss.detach()), "shadow_rate": shadow_rate},
        )

    def predict(self, trainer: UnlearningTrainer, images: torch.Tensor) -> torch.Tensor:
        """Return the network's outputs without the shadow channel."""
        logits = trainer.network(images)
        return logits if self.layer is None else logits[:, : self.layer.out_channels]

    def finalize(self, trainer: UnlearningTrainer) -> None:
        """Remove the shadow channel, so the network has its original output size again."""
        if self.layer is None:
            return
        module = self.layer.module
        resize_output_channels(module, self.layer.out_channels)
        # The optimizer's state (momentum, Adam moments) of the resized parameters no longer fits their shape.
        for parameter in module.parameters(recurse=False):
            trainer.optimizer.state.pop(parameter, None)
        logger.info("Boundary Expanding removed the shadow class from layer %r.", self.layer.name)
        self.layer = None
