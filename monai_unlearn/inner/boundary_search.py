# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Inner search of boundary unlearning: find boundary points of forget samples and label them.

In the flow transform -> engine -> inner search -> loss -> handlers, this module receives a forget batch from the
unlearning trainer, runs ``K`` perturbed sign-gradient steps on the inputs against the frozen original network, and
returns the boundary points with their labels, which become the targets of the outer step.

The inner problem for each forget sample ``(x, y)`` is::

    x* in argmax over x' in B(x, epsilon) and box  of  l(f_0(x'), y) - (lambda / 2) * ||x' - x||^2

Classification uses the per-sample cross-entropy. Segmentation uses the mean voxel cross-entropy over the forget
region, and its boundary label is a voxel-wise map that keeps the ground truth outside the forget region.

References: G. R. Nahass et al., "Targeted Unlearning Using Perturbed Sign Gradient Methods With Applications On
Medical Images", arXiv:2505.21872 (2025); M. Chen et al., "Boundary Unlearning", CVPR 2023.
"""

from __future__ import annotations

import copy
import math
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from monai_unlearn.optimizers import ClosenessSchedule, PerturbedSignGradient

__all__ = ["BoundarySearch", "BoundarySearchResult", "frozen_copy", "to_class_indices", "soft_boundary_targets"]


def frozen_copy(network: torch.nn.Module) -> torch.nn.Module:
    """Return a deep copy of ``network`` in eval mode whose parameters do not require gradients.

    This is the frozen original ``f_0`` of the bilevel problem: the inner search computes input gradients through it,
    and no parameter gradient is ever computed or stored for it.
    """
    frozen = copy.deepcopy(network)
    frozen.eval()
    frozen.requires_grad_(False)
    return frozen


def to_class_indices(labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Convert labels to integer class indices shaped like ``logits`` without its channel dimension.

    Accepted label layouts, for logits of shape ``(B, C, *spatial)``: indices ``(B, *spatial)``, indices with a
    channel ``(B, 1, *spatial)``, or one-hot ``(B, C, *spatial)`` with ``C > 1``.

    Raises:
        ValueError: when the label shape matches none of these layouts, or an index is outside ``[0, C)``.
    """
    num_classes = logits.shape[1]
    target_shape = (logits.shape[0], *logits.shape[2:])
    if labels.shape == logits.shape and num_classes > 1:
        indices = labels.argmax(dim=1)
    elif labels.ndim == logits.ndim and labels.shape[1] == 1:
        indices = labels[:, 0]
    else:
        indices = labels
    indices = indices.long()
    if tuple(indices.shape) != target_shape:
        raise ValueError(
            f"Labels of shape {tuple(labels.shape)} do not match network output of shape {tuple(logits.shape)}: "
            f"expected class indices {target_shape}, indices with a channel dimension, or one-hot labels."
        )
    if indices.numel() > 0:
        # One transfer of both bounds, instead of one per bound.
        low, high = torch.stack(torch.aminmax(indices)).tolist()
        if low < 0 or high >= num_classes:
            raise ValueError(
                f"Label values must be class indices in [0, {num_classes - 1}], got values in [{low}, {high}]. "
                "Check the label mapping and the network's out_channels."
            )
    return indices


def soft_boundary_targets(logits: torch.Tensor, top_k: int | None, temperature: float) -> torch.Tensor:
    """Return ``softmax(topk(logits) / T)`` over the channel dimension, detached.

    Logits outside the ``top_k`` largest of each sample (or voxel) are masked to minus infinity before the softmax,
    so the soft target spreads its mass over the ``top_k`` most likely classes only. ``top_k=None`` keeps every class.
    """
    logits = logits.detach().float()
    if top_k is not None and top_k < logits.shape[1]:
        kth = logits.topk(top_k, dim=1).values.narrow(1, top_k - 1, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.softmax(logits / temperature, dim=1)


@dataclass
class BoundarySearchResult:
    """Output of one inner search.

    Attributes:
        points: boundary points ``x*``, detached, same shape as the input images.
        labels: hard boundary labels: ``argmax f_0(x*)``, shape ``(B,)`` for classification, ``(B, *spatial)`` for
            segmentation (ground truth outside the forget region).
        soft_targets: detached soft targets ``softmax(topk(f_0(x*)) / T)``, shape ``(B, C, *spatial)``; for
            segmentation, the one-hot ground truth outside the forget region.
        logits: detached logits of the frozen network at ``x*``.
        flip_fraction: per sample, 1.0 when the boundary label differs from the label (classification), or the
            fraction of forget-region voxels whose boundary label differs from the ground truth (segmentation).
        flip_rate: mean of ``flip_fraction`` over the batch.
        inner_losses: mean per-sample inner loss at each evaluated iterate, from ``x'_0`` to ``x'_K``.
        steps_run: number of inner steps taken (fewer than ``K`` when every sample stopped early).
    """

    points: torch.Tensor
    labels: torch.Tensor
    soft_targets: torch.Tensor
    logits: torch.Tensor
    flip_fraction: torch.Tensor
    flip_rate: float
    inner_losses: list[float] = field(default_factory=list)
    steps_run: int = 0


class BoundarySearch:
    """Perturbed sign-gradient search for boundary points of a frozen network.

    Runs ``steps`` iterations of :class:`~monai_unlearn.optimizers.PerturbedSignGradient` on the input images,
    computing the input gradient of the per-sample inner loss summed over the batch (so that a sample's step does not
    depend on the batch size), then labels the final iterates with the frozen network.

    ``steps=1``, ``step_size=epsilon``, ``noise_scale=0`` and ``closeness=0`` is the FGSM search of Boundary Shrink
    (Chen et al., CVPR 2023); the defaults are the perturbed variant of Nahass et al. (arXiv:2505.21872).

    Args:
        epsilon: L-infinity radius of the search in the units the network sees, for example 8/255 for images
            scaled to [0, 1]. Must be > 0.
        steps: number of inner steps ``K >= 1``.
        step_size: base step size ``eta``; None gives ``epsilon`` when ``steps == 1`` and ``epsilon / sqrt(steps)``
            otherwise.
        step_size_schedule: schedule of ``eta_k`` over inner steps, see :func:`~monai_unlearn.optimizers.step_size_at`.
        noise: noise law: ``"normal"``, ``"laplace"``, ``"cauchy"`` or ``"uniform"``.
        noise_scale: noise scale ``gamma >= 0``.
        closeness: closeness weight ``lambda >= 0``, or a :class:`~monai_unlearn.optimizers.ClosenessSchedule`
            evaluated at the outer step passed to :meth:`__call__`.
        box: ``(low, high)`` valid intensity range of the network input, or None.
        random_start: start from a uniform random point of the ball instead of the clean image.
        early_stop: None (run all steps), ``"flip"`` (freeze a sample once its label has flipped; for segmentation,
            once half of its forget region has flipped) or a float ``kappa`` in (0, 1) (freeze a sample once the
            probability of its label, averaged over the forget region for segmentation, is at most ``kappa``).
        quantize_bits: round iterates to a ``2**bits``-level grid over ``box`` (8 for 8-bit images only).
        top_k: number of classes kept in the soft targets; None keeps all.
        temperature: softmax temperature ``T > 0`` of the soft targets.
        generator: ``torch.Generator`` on the images' device for repeatable noise and random starts.
        exclude_classes: class indices that no boundary label or soft target may take, for example a retired
            segmentation label or a forgotten class: the boundary label is the argmax over the other classes at
            ``x*``. None (default) allows every class. When a single class stays allowed, every boundary label is
            that class and no inner step runs (``steps_run`` is 0; the points are the clean images).

    Raises:
        ValueError: when a hyper-parameter is out of range.
    """

    def __init__(
        self,
        epsilon: float,
        steps: int = 1,
        step_size: float | None = None,
        step_size_schedule: str = "constant",
        noise: str = "normal",
        noise_scale: float = 0.0,
        closeness: float | ClosenessSchedule = 0.0,
        box: Sequence[float] | None = None,
        random_start: bool = False,
        early_stop: str | float | None = None,
        quantize_bits: int | None = None,
        top_k: int | None = 3,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        exclude_classes: Sequence[int] | None = None,
    ) -> None:
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ValueError(f"Invalid number of inner steps: {steps!r}. It must be an integer >= 1.")
        if not isinstance(epsilon, (int, float)) or isinstance(epsilon, bool) or not math.isfinite(epsilon) or epsilon <= 0:
            raise ValueError(f"Invalid epsilon: {epsilon!r}. It must be a finite number > 0 (input units).")
        if isinstance(early_stop, str):
            if early_stop != "flip":
                raise ValueError(f"Invalid early_stop {early_stop!r}: use None, 'flip' or a probability in (0, 1).")
        elif early_stop is not None and not (isinstance(early_stop, (int, float)) and 0 < early_stop < 1):
            raise ValueError(f"Invalid early_stop {early_stop!r}: use None, 'flip' or a probability in (0, 1).")
        if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"Invalid top_k: {top_k!r}. It must be an integer >= 1, or None for all classes.")
        if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature <= 0:
            raise ValueError(f"Invalid temperature: {temperature!r}. It must be a finite number > 0.")
        if box is not None and len(box) != 2:
            raise ValueError(f"Invalid box: {box!r}. Expected a pair (low, high).")
        if not isinstance(closeness, ClosenessSchedule):
            closeness = ClosenessSchedule(closeness)
        excluded = [] if exclude_classes is None else list(exclude_classes)
        for value in excluded:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"Invalid exclude_classes {excluded!r}: expected non-negative class indices.")
        self.epsilon = float(epsilon)
        self.steps = steps
        self.step_size = step_size if step_size is not None else self.epsilon / math.sqrt(steps)
        self.step_size_schedule = step_size_schedule
        self.noise = noise
        self.noise_scale = noise_scale
        self.closeness = closeness
        self.box = None if box is None else (float(box[0]), float(box[1]))
        self.random_start = random_start
        self.early_stop = early_stop
        self.quantize_bits = quantize_bits
        self.top_k = top_k
        self.temperature = float(temperature)
        self.generator = generator
        self._checked_network: weakref.ref | None = None
        self.exclude_classes = sorted(set(excluded))
        self._num_classes: int | None = None
        # Build one optimizer now so that invalid hyper-parameters fail at construction, not at the first batch.
        self._make_optimizer(torch.zeros(1, requires_grad=True), closeness=self.closeness.initial)

    def _make_optimizer(self, points: torch.Tensor, closeness: float) -> PerturbedSignGradient:
        return PerturbedSignGradient(
            [points],
            lr=self.step_size,
            epsilon=self.epsilon,
            box=self.box,
            noise=self.noise,
            noise_scale=self.noise_scale,
            closeness=closeness,
            maximize=True,
            lr_schedule=self.step_size_schedule,
            total_steps=self.steps,
            quantize_bits=self.quantize_bits,
            generator=self.generator,
        )

    def _check_frozen(self, network: torch.nn.Module) -> None:
        # The trainer passes the same frozen network at every outer step, so it is checked at its first call only,
        # instead of scanning its modules and parameters at every step.
        if self._checked_network is not None and self._checked_network() is network:
            return
        if any(module.training for module in network.modules()) or any(p.requires_grad for p in network.parameters()):
            raise ValueError(
                "BoundarySearch needs the frozen original network (eval mode, no parameter gradients); "
                "pass monai_unlearn.inner.frozen_copy(network) instead of the trainable network."
            )
        self._checked_network = weakref.ref(network)

    def _per_sample_loss(
        self, logits: torch.Tensor, labels: torch.Tensor, region: torch.Tensor | None
    ) -> torch.Tensor:
        losses = F.cross_entropy(logits.float(), labels, reduction="none")
        if losses.ndim == 1:
            return losses
        losses = losses.flatten(1)
        if region is None:
            return losses.mean(dim=1)
        weights = region.flatten(1).to(losses.dtype)
        return (losses * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)

    @staticmethod
    def _flip_fraction(predicted: torch.Tensor, labels: torch.Tensor, region: torch.Tensor | None) -> torch.Tensor:
        changed = (predicted != labels).flatten(1).float() if predicted.ndim > 1 else (predicted != labels).float()
        if changed.ndim == 1:
            return changed
        if region is None:
            return changed.mean(dim=1)
        weights = region.flatten(1).float()
        return (changed * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)

    def _label_probability(self, logits: torch.Tensor, labels: torch.Tensor, region: torch.Tensor | None):
        prob = torch.softmax(logits.float(), dim=1).gather(1, labels.unsqueeze(1)).squeeze(1)
        if prob.ndim == 1:
            return prob
        prob = prob.flatten(1)
        if region is None:
            return prob.mean(dim=1)
        weights = region.flatten(1).float()
        return (prob * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)

    def _active(self, logits: torch.Tensor, labels: torch.Tensor, region: torch.Tensor | None) -> torch.Tensor | None:
        if self.early_stop is None:
            return None
        if self.early_stop == "flip":
            flipped = self._flip_fraction(logits.argmax(dim=1), labels, region)
            return flipped < 0.5
        return self._label_probability(logits, labels, region) > float(self.early_stop)

    def __call__(
        self,
        network: torch.nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        region: torch.Tensor | None = None,
        outer_step: int = 1,
        on_inner_step: Callable[[int], None] | None = None,
        on_inner_step_completed: Callable[[int], None] | None = None,
    ) -> BoundarySearchResult:
        """Search boundary points of ``images`` and label them with the frozen ``network``.

        Args:
            network: the frozen original network, see :func:`frozen_copy`.
            images: clean forget images ``(B, C_in, *spatial)``.
            labels: their labels (class indices, indices with a channel dimension, or one-hot).
            region: segmentation only: boolean forget region ``(B, *spatial)`` or ``(B, 1, *spatial)``; None means
                the whole image. Ignored for classification.
            outer_step: the outer step ``t`` (1-based), for the closeness schedule.
            on_inner_step: called with the 0-based inner step index before each step.
            on_inner_step_completed: called with the 0-based inner step index after each step.

        Returns:
            A :class:`BoundarySearchResult`.

        The frozen network runs ``K + 1`` forward passes (one per inner step and one at the final points) and ``K``
        backward passes that compute input gradients only. When every sample stops early, the logits of the last
        forward pass label the points, without another pass.

        Raises:
            ValueError: when the network is not frozen (checked at the first call with each network) or the labels do
                not fit its output.
        """
        self._check_frozen(network)
        anchor = images.detach()
        points = anchor.clone()
        if self.random_start:
            offset = torch.rand(points.shape, generator=self.generator, device=points.device, dtype=points.dtype)
            points.add_(offset.mul_(2.0).sub_(1.0).mul_(self.epsilon))
            if self.box is not None:
                points.clamp_(*self.box)
        points.requires_grad_(True)
        optimizer = self._make_optimizer(points, closeness=self.closeness(outer_step))
        optimizer.set_anchor(points, anchor)

        target: torch.Tensor | None = None
        # Kept on the device and moved to the host together at the end, to avoid one synchronisation per step.
        inner_losses: list[torch.Tensor] = []
        final_logits: torch.Tensor | None = None
        steps_run = 0
        # With a single allowed class every boundary label is that class, so the search has nothing to decide.
        steps = 0 if self._single_allowed_class(network, points) else self.steps
        for k in range(steps):
            if on_inner_step is not None:
                on_inner_step(k)
            with torch.enable_grad():
                logits = network(points)
                self._num_classes = logits.shape[1]
                if target is None:
                    target = to_class_indices(labels, logits)
                    region = self._normalise_region(region, target)
                per_sample = self._per_sample_loss(logits, target, region)
                (gradient,) = torch.autograd.grad(per_sample.sum(), points)
            inner_losses.append(per_sample.detach().mean())
            active = self._active(logits.detach(), target, region)
            if active is not None and not bool(active.any()):
                # Every sample stopped at the current points, whose logits are at hand.
                final_logits = logits.detach()
                break
            previous = points.detach().clone() if active is not None else None
            points.grad = gradient
            optimizer.step()
            points.grad = None
            if previous is not None:
                frozen_samples = ~active
                with torch.no_grad():
                    points[frozen_samples] = previous[frozen_samples]
            steps_run += 1
            if on_inner_step_completed is not None:
                on_inner_step_completed(k)

        if final_logits is None:
            with torch.no_grad():
                final_logits = network(points.detach()).detach()
        if target is None:  # the search was skipped
            target = to_class_indices(labels, final_logits)
            region = self._normalise_region(region, target)
        if len(inner_losses) == steps_run:
            inner_losses.append(self._per_sample_loss(final_logits, target, region).mean())
        labelling_logits = self._mask_excluded(final_logits)
        predicted = labelling_logits.argmax(dim=1)
        if predicted.ndim > 1 and region is not None:
            predicted = torch.where(region, predicted, target)
        flip_fraction = self._flip_fraction(predicted, target, region)
        soft_targets = soft_boundary_targets(labelling_logits, self.top_k, self.temperature)
        if predicted.ndim > 1 and region is not None:
            # Outside the forget region the soft target is the one-hot ground truth, as for the hard labels.
            one_hot = F.one_hot(target, soft_targets.shape[1]).movedim(-1, 1).to(soft_targets.dtype)
            soft_targets = torch.where(region.unsqueeze(1), soft_targets, one_hot)
        flip_rate = flip_fraction.mean() if flip_fraction.numel() else flip_fraction.new_zeros(())
        *loss_values, flip_rate_value = torch.stack([*inner_losses, flip_rate.to(inner_losses[0].dtype)]).tolist()
        return BoundarySearchResult(
            points=points.detach(),
            labels=predicted,
            soft_targets=soft_targets,
            logits=final_logits,
            flip_fraction=flip_fraction,
            flip_rate=flip_rate_value,
            inner_losses=loss_values,
            steps_run=steps_run,
        )

    def _single_allowed_class(self, network: torch.nn.Module, points: torch.Tensor) -> bool:
        """Return True when the exclusions leave one class, running the network once if its class count is unknown."""
        if not self.exclude_classes:
            return False
        if self._num_classes is None:
            with torch.no_grad():
                self._num_classes = network(points).shape[1]
        return self._num_classes - len(self.exclude_classes) == 1

    def _mask_excluded(self, logits: torch.Tensor) -> torch.Tensor:
        """Return ``logits`` with the excluded classes set to minus infinity, so that no target takes them."""
        if not self.exclude_classes:
            return logits
        num_classes = logits.shape[1]
        if max(self.exclude_classes) >= num_classes or len(self.exclude_classes) >= num_classes:
            raise ValueError(
                f"exclude_classes {self.exclude_classes} does not fit a network with {num_classes} outputs: every "
                "index must be below the number of classes and at least one class must stay allowed."
            )
        masked = logits.clone()
        masked[:, self.exclude_classes] = float("-inf")
        return masked

    @staticmethod
    def _normalise_region(region: torch.Tensor | None, target: torch.Tensor) -> torch.Tensor | None:
        if region is None or target.ndim == 1:
            return None
        if region.ndim == target.ndim + 1 and region.shape[1] == 1:
            region = region[:, 0]
        if region.shape != target.shape:
            raise ValueError(
                f"Forget region of shape {tuple(region.shape)} does not match labels of shape {tuple(target.shape)}."
            )
        return region.bool()

    def __repr__(self) -> str:
        return (
            f"BoundarySearch(epsilon={self.epsilon}, steps={self.steps}, step_size={self.step_size}, "
            f"noise={self.noise!r}, noise_scale={self.noise_scale}, closeness={self.closeness}, box={self.box}, "
            f"early_stop={self.early_stop!r}, exclude_classes={self.exclude_classes})"
        )
