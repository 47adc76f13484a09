# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""The interface between the unlearning trainer and an unlearning method.

The trainer (:class:`~monai_unlearn.engines.UnlearningTrainer`) owns the data pairing, devices, mixed precision,
events, optimizer steps and checkpoints. A method owns only the arithmetic of one outer step: given a forget batch and
a retain batch it returns the loss to minimise. Every method, the paper's and the baselines, runs through the same
trainer, so their comparisons share data, engine and evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from monai_unlearn.engines.unlearning_trainer import UnlearningTrainer

__all__ = ["UnlearningBatch", "StepOutput", "UnlearningMethod"]


@dataclass
class UnlearningBatch:
    """Images and labels of one side (forget or retain) of an outer step, already on the trainer's device.

    Attributes:
        images: network inputs ``(B, C_in, *spatial)``.
        labels: labels as the loader gives them (class indices, with or without a channel dimension, or one-hot).
        region: segmentation only: boolean forget region ``(B, *spatial)``, or None for whole images.
    """

    images: torch.Tensor
    labels: torch.Tensor
    region: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass
class StepOutput:
    """Result of :meth:`UnlearningMethod.compute_loss`.

    Attributes:
        loss: scalar loss to minimise, attached to the trainable network's graph.
        forget_logits: trainable network's outputs on the forget batch (detached by the trainer), or None.
        retain_logits: trainable network's outputs on the retain batch, or None.
        metrics: scalar diagnostics of this step, such as ``forget_loss``, ``retain_loss`` and ``flip_rate``, as
            floats or 0-d tensors. The trainer turns them into floats after the optimizer step, moving all tensor
            values to the host in one transfer.
    """

    loss: torch.Tensor
    forget_logits: torch.Tensor | None = None
    retain_logits: torch.Tensor | None = None
    metrics: dict[str, float | torch.Tensor] = field(default_factory=dict)


class UnlearningMethod:
    """Base class of unlearning methods run by :class:`~monai_unlearn.engines.UnlearningTrainer`.

    Subclasses implement :meth:`compute_loss` and may override the hooks. The trainer calls :meth:`setup` once before
    the first outer step (at the start of the first pass, after the frozen original network exists and before the
    engine iterates the loaders), :meth:`compute_loss` at every outer step, :meth:`before_optimizer_step` between the
    backward pass and the optimizer step, :meth:`on_pass_completed` after each pass over the forget set, and
    :meth:`finalize` when the run completes. The last two run before the bundle's own handlers of the same event.
    """

    #: name used in logs, reports and the method registry.
    name: str = "base"

    @property
    def uses_retain(self) -> bool:
        """Whether :meth:`compute_loss` needs a retain batch; when False the trainer neither loads nor computes one."""
        return False

    @property
    def uses_forget(self) -> bool:
        """Whether :meth:`compute_loss` needs a forget batch."""
        return True

    @property
    def needs_optimizer_steps(self) -> bool:
        """Whether the method learns through outer steps.

        A method that edits the weights in closed form inside :meth:`setup` (SSD) returns False. The trainer then
        ends the run right after :meth:`setup` and takes no optimizer step. It still fires ``Events.COMPLETED``, so
        the saver and report handlers run.
        """
        return True

    def setup(self, trainer: UnlearningTrainer) -> None:
        """Prepare the method before the first outer step."""

    def compute_loss(
        self, trainer: UnlearningTrainer, forget: UnlearningBatch | None, retain: UnlearningBatch | None
    ) -> StepOutput:
        """Return the loss of one outer step; see :class:`StepOutput`."""
        raise NotImplementedError(f"{type(self).__name__} must implement compute_loss.")

    def predict(self, trainer: UnlearningTrainer, images: torch.Tensor) -> torch.Tensor:
        """Return the trainable network's outputs on ``images`` as the bundle's handlers should see them.

        The trainer calls it for batches on which the method computes nothing. A method that changes the network's
        output size during the run (Boundary Expanding) returns the original channels only.
        """
        return trainer.network(images)

    def before_optimizer_step(self, trainer: UnlearningTrainer) -> None:
        """Change gradients after the backward pass and before the optimizer step (for example, mask them)."""

    def on_pass_completed(self, trainer: UnlearningTrainer) -> None:
        """React to the end of a pass over the forget set."""

    def finalize(self, trainer: UnlearningTrainer) -> None:
        """Finish the revision when the run completes (for example, remove a temporary output channel)."""

    def config(self) -> dict[str, Any]:
        """Return the method's settings as plain values, for reports and audit manifests."""
        return {"name": self.name}

    def state_dict(self) -> dict[str, Any]:
        """Return the method's state that a resumed run needs."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the state returned by :meth:`state_dict`."""
