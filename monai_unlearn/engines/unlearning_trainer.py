# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""The unlearning trainer: a MONAI ``SupervisedTrainer`` whose outer step unlearns a forget set.

In the flow transform -> engine -> inner search -> loss -> handlers, the trainer reads the forget flag that the
tagging transform wrote (or takes forget and retain batches from two loaders), keeps the frozen original network,
asks the unlearning method for the loss of each outer step, takes the optimizer step and fires MONAI's iteration
events so that the bundle's own handlers keep working.

A bundle selects it by overriding ``train#trainer#_target_`` and adding the unlearning arguments; every other
argument of the bundle's trainer (device, loader, network, optimizer, handlers, AMP) is used as the bundle defines it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.utils import CommonKeys as Keys
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader, DistributedSampler

from monai_unlearn.inner import frozen_copy
from monai_unlearn.methods import StepOutput, UnlearningBatch, UnlearningMethod, create_method

from .random_state import capture_random_state, random_objects, restore_random_state

__all__ = ["UnlearningTrainer", "BATCHNORM_POLICIES", "PAIRINGS", "unwrap_network", "channels_last_format"]

logger = logging.getLogger(__name__)

BATCHNORM_POLICIES = ("train", "eval", "frozen")
PAIRINGS = ("flag", "loaders")


def unwrap_network(network: torch.nn.Module) -> torch.nn.Module:
    """Return the module inside ``DistributedDataParallel``/``DataParallel`` or ``torch.compile`` wrappers."""
    while True:
        if hasattr(network, "_orig_mod"):
            network = network._orig_mod
        elif isinstance(network, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
            network = network.module
        else:
            return network


def channels_last_format(network: torch.nn.Module) -> torch.memory_format:
    """Return the channels-last memory format that fits ``network``'s convolutions.

    ``torch.channels_last_3d`` when the network has 5-D weights (3-D convolutions), else ``torch.channels_last`` when
    it has 4-D weights (2-D convolutions).

    Raises:
        ValueError: when the network has no 4-D or 5-D weight, so no convolution could use the format.
    """
    ranks = {parameter.dim() for parameter in network.parameters()}
    if 5 in ranks:
        return torch.channels_last_3d
    if 4 in ranks:
        return torch.channels_last
    raise ValueError(
        f"channels_last=True needs a network with 2-D or 3-D convolutions, but {type(network).__name__} has no 4-D "
        "or 5-D weight; set channels_last=False."
    )


def _is_distributed_data_parallel(network: torch.nn.Module) -> bool:
    while hasattr(network, "_orig_mod"):
        network = network._orig_mod
    return isinstance(network, torch.nn.parallel.DistributedDataParallel)


def _check_distributed_network(network: torch.nn.Module) -> None:
    while hasattr(network, "_orig_mod"):
        network = network._orig_mod
    if not isinstance(network, torch.nn.parallel.DistributedDataParallel) or not network.broadcast_buffers:
        return
    if any(True for _ in network.module.buffers()):
        raise ValueError(
            "The network is wrapped in DistributedDataParallel with broadcast_buffers=True, which makes every forward "
            "pass a collective operation. The unlearning processes run different numbers of forward passes per step "
            "(a process may have no forget sample in its batch), and only rank 0 evaluates the network for the "
            "report, so the processes would wait for each other forever. Construct it with broadcast_buffers=False, "
            "as configs/multi_gpu_unlearn.json of the example bundle does."
        )


def _scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Return the metrics as Python floats, moving all tensor values to the host in one transfer."""
    names = [name for name, value in metrics.items() if torch.is_tensor(value)]
    if not names:
        return dict(metrics)
    values = torch.stack([metrics[name].detach().float().reshape(()) for name in names]).tolist()
    return {**metrics, **dict(zip(names, values))}


def _plain(tensor: torch.Tensor) -> torch.Tensor:
    """Drop the MetaTensor subclass: the unlearning arithmetic needs plain tensors and no metadata tracking."""
    return tensor.as_tensor() if hasattr(tensor, "as_tensor") else tensor


class UnlearningTrainer(SupervisedTrainer):
    """Supervised trainer that revises a trained network so that it forgets a forget set.

    Each iteration is one outer step: the forget batch (and a retain batch when the method uses one) goes to the
    unlearning method, which returns the loss; the trainer back-propagates it, lets the method adjust the gradients,
    and steps the optimizer. One epoch is one pass over the forget set, so ``max_epochs`` is the pass budget.

    Two ways to give the forget and retain sets:

    - ``pairing="flag"`` (the default when ``retain_loader`` is None): ``train_data_loader`` is the bundle's training
      loader and every sample carries an integer forget flag under ``forget_key`` (written before collation by
      :class:`~monai_unlearn.transforms.TagForgetd`); each batch is split into its forget and retain samples.
    - ``pairing="loaders"`` (the default when ``retain_loader`` is given): ``train_data_loader`` yields forget
      samples only and retain batches are drawn from ``retain_loader``, cycling it, only when the method uses them.

    The frozen original network is a copy of ``network`` taken at the first iteration, after the bundle's
    ``CheckpointLoader`` has loaded the trained weights at ``Events.STARTED``. Its weights, the noise generator's state
    and the method's state are part of :meth:`state_dict`, so a checkpointed revision resumes against the same original.
    :meth:`state_dict` also contains the random state needed to continue the data stream exactly where it stopped (see
    :meth:`load_state_dict`), so a revision resumed from an iteration checkpoint ends with the same weights as an
    uninterrupted one.

    Args:
        device, max_epochs, train_data_loader, network, optimizer: as for ``monai.engines.SupervisedTrainer``.
        loss_function: the bundle's loss. Accepted so that a bundle's trainer arguments are reused unchanged; the
            unlearning losses are defined by the method.
        method: name of a registered method (``"psg"``, ``"boundary_shrink"``, ``"psg_retain"``, ``"psg_soft"``,
            ``"psg_multistep"`` and the baselines) or an :class:`~monai_unlearn.methods.UnlearningMethod`.
        method_kwargs: settings passed to the registered method, for example ``{"epsilon": 0.1}``.
        retain_loader: loader of retain samples for ``pairing="loaders"``.
        pairing: ``"flag"`` or ``"loaders"``; None infers it from ``retain_loader``.
        forget_key: batch key of the integer forget flag (``pairing="flag"``).
        region_key: segmentation only: batch key of a boolean forget-region map; None treats whole images as forget
            regions. With a region map, a pass in which every sample is a forget sample is allowed, because the
            voxels outside the regions keep their ground truth.
        batchnorm: BatchNorm policy of the trainable network: ``"train"`` (batch statistics, running statistics
            updated, as in the reference code), ``"eval"`` (running statistics used and kept; affine parameters
            trained) or ``"frozen"`` (as ``"eval"``, and the affine parameters are not updated either). Forget-only
            batches drag the running statistics under ``"train"``.
        original_network: the frozen original network, if it is not a copy of ``network``; it is put in eval mode
            and its parameters stop requiring gradients.
        seed: seed of the trainer's ``torch.Generator`` (noise and random starts of the inner search). The rank is
            added under ``torch.distributed``.
        check_inputs: raise on NaN or infinite images before each outer step.
        channels_last: store the trainable and the frozen network's weights and the input batches in the channels-last
            memory format (``torch.channels_last`` for 2-D, ``torch.channels_last_3d`` for 3-D convolutions), which
            speeds up convolutions on recent GPUs and on CPUs with oneDNN. The arithmetic is the same.
        kwargs: other arguments of ``monai.engines.SupervisedTrainer`` (``train_handlers``, ``amp``, ``amp_kwargs``,
            ``compile``, ``compile_kwargs``, ...). With ``compile=True`` the frozen original is compiled with the same
            ``compile_kwargs`` as the trainable network. With ``amp=True`` on CUDA the whole outer step, inner search
            included, runs under ``torch.autocast``.

    Note:
        Under ``torch.distributed`` (the network wrapped in ``DistributedDataParallel``, one process per device), each
        process splits its own shard of the batches by the forget flag, and DDP averages the gradients of the
        processes. A process whose batch has nothing to learn while another's has contributes a zero gradient, so
        that every process takes part in each gradient all-reduce. The pass summaries sum the counts and losses of all
        processes. The network must be built with ``broadcast_buffers=False``, because the processes run different
        numbers of forward passes per step and the rank-0 handlers evaluate the network alone.

    Raises:
        ValueError: for an unknown method, pairing or BatchNorm policy, a retain loader given with
            ``pairing="flag"``, ``channels_last`` on a network without convolutions, or a ``DistributedDataParallel``
            network with ``broadcast_buffers=True``; during the run, for a batch without a forget flag, an empty forget
            or retain set, labels that do not fit the network, or non-finite images.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable | DataLoader,
        network: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_function: Any = None,
        method: str | UnlearningMethod = "psg",
        method_kwargs: dict[str, Any] | None = None,
        retain_loader: Iterable | DataLoader | None = None,
        pairing: str | None = None,
        forget_key: str = "forget",
        region_key: str | None = None,
        batchnorm: str = "train",
        original_network: torch.nn.Module | None = None,
        seed: int = 0,
        check_inputs: bool = True,
        channels_last: bool = False,
        **kwargs: Any,
    ) -> None:
        if batchnorm not in BATCHNORM_POLICIES:
            raise ValueError(f"Invalid batchnorm policy {batchnorm!r}: expected one of {BATCHNORM_POLICIES}.")
        if pairing is None:
            pairing = "loaders" if retain_loader is not None else "flag"
        if pairing not in PAIRINGS:
            raise ValueError(f"Invalid pairing {pairing!r}: expected one of {PAIRINGS}.")
        if pairing == "flag" and retain_loader is not None:
            raise ValueError(
                "retain_loader was given with pairing='flag'; use pairing='loaders' (the training loader then "
                "yields forget samples only) or drop retain_loader and tag samples with TagForgetd."
            )
        if loss_function is None:
            loss_function = torch.nn.CrossEntropyLoss()
        # The bundle's handlers are attached after the trainer's own event handlers (below), so that the method's
        # hooks run first at each event. A handler that saves or evaluates the network at EPOCH_COMPLETED or
        # COMPLETED then gets it after the method's on_pass_completed and finalize (for example without the shadow
        # output channel of Boundary Expanding).
        train_handlers = kwargs.pop("train_handlers", None)
        _check_distributed_network(network)
        compile_kwargs = dict(kwargs.get("compile_kwargs") or {})
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            network=network,
            optimizer=optimizer,
            loss_function=loss_function,
            **kwargs,
        )
        self.method = create_method(method, **(method_kwargs or {}))
        self.retain_loader = retain_loader
        self.pairing = pairing
        self.forget_key = forget_key
        self.region_key = region_key
        self.batchnorm = batchnorm
        self.check_inputs = check_inputs
        self.seed = int(seed)
        self.compile_kwargs = compile_kwargs
        self.channels_last = bool(channels_last)
        self.memory_format: torch.memory_format | None = None
        if self.channels_last:
            # Module.to keeps the Parameter objects (it replaces their data), so the optimizer still holds them.
            self.memory_format = channels_last_format(unwrap_network(self.network))
            unwrap_network(self.network).to(memory_format=self.memory_format)
        self.original_network: torch.nn.Module | None = None
        if original_network is not None:
            self.original_network = self._prepare_original(original_network)
        self._batchnorm_modules: list[_BatchNorm] | None = None
        self._distributed = _is_distributed_data_parallel(self.network)
        self._pending_original_state: dict | None = None
        self._method_ready = False
        self._retain_iterator: Iterator | None = None
        self._retain_epoch = 0
        self._last_images: torch.Tensor | None = None
        self._last_labels: torch.Tensor | None = None
        # Positions of the forget and retain samples of the current flag-mode batch, on the trainer's device.
        self._last_split: tuple[torch.Tensor, torch.Tensor] | None = None
        self.history: list[dict[str, Any]] = []
        self._pass_totals: dict[str, float] = {}
        # Random state when the current data iterators were made, and what a resumed run still has to restore.
        self._epoch_random_state: dict[str, Any] | None = None
        self._retain_random_state: dict[str, Any] | None = None
        self._retain_batches_drawn = 0
        self._pending_resume: dict[str, Any] | None = None
        self._restored_pass_totals: dict[str, float] | None = None
        self._unfinished_pass: int | None = None

        self.generator = torch.Generator(device=self.state.device)
        self.generator.manual_seed(self.seed + self._rank())

        self.add_event_handler(Events.EPOCH_STARTED, self._reset_pass_totals)
        self.add_event_handler(Events.EPOCH_STARTED, self._start_pass)
        self.add_event_handler(Events.EPOCH_COMPLETED, self._complete_pass)
        self.add_event_handler(Events.COMPLETED, self._finalize_method)
        if train_handlers is not None:
            self._register_handlers(train_handlers)

    @staticmethod
    def _rank() -> int:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank()
        return 0

    def run(self) -> None:  # type: ignore[override]
        """Check the loaders, then run the revision (MONAI skips an empty loader silently; this raises instead).

        Raises:
            ValueError: when the forget (or training) loader is empty, or the method needs a retain loader that is
                missing or empty.
        """
        self._check_loaders()
        super().run()

    # ----------------------------------------------------------------------------------------------------- events
    def fire_inner_iteration_started(self, inner_step: int) -> None:
        """Fire MONAI's ``INNER_ITERATION_STARTED`` with ``state.inner_iteration`` set to the 0-based inner step."""
        self.state.inner_iteration = inner_step
        self.fire_event(IterationEvents.INNER_ITERATION_STARTED)

    def fire_inner_iteration_completed(self, inner_step: int) -> None:
        """Fire MONAI's ``INNER_ITERATION_COMPLETED`` after inner step ``inner_step``."""
        self.state.inner_iteration = inner_step
        self.fire_event(IterationEvents.INNER_ITERATION_COMPLETED)

    def _check_loaders(self) -> None:
        if hasattr(self.data_loader, "__len__") and len(self.data_loader) == 0:
            what = "forget loader" if self.pairing == "loaders" else "training loader"
            raise ValueError(f"The {what} is empty: there is nothing to unlearn. Check the forget rule and the datalist.")
        if self.pairing == "loaders" and self.method.uses_retain:
            if self.retain_loader is None:
                raise ValueError(
                    f"Method {self.method.name!r} uses a retain term but pairing='loaders' got no retain_loader; "
                    "pass retain_loader or set the retain weight to 0."
                )
            if hasattr(self.retain_loader, "__len__") and len(self.retain_loader) == 0:
                raise ValueError("The retain loader is empty: the forget set covers the whole training set.")

    def _reset_pass_totals(self, _: Any = None) -> None:
        self._complete_unfinished_pass()
        if self._restored_pass_totals is not None:
            # A run resumed in the middle of a pass continues that pass's totals.
            self._pass_totals, self._restored_pass_totals = self._restored_pass_totals, None
            return
        self._pass_totals = {"forget_samples": 0.0, "retain_samples": 0.0}

    def _complete_unfinished_pass(self) -> None:
        """Write the summary of a pass whose last iteration was checkpointed just before the run was interrupted."""
        if self._unfinished_pass is None:
            return
        self._ensure_ready()
        epoch, self._unfinished_pass = self._unfinished_pass, None
        self._complete_pass(epoch=epoch)

    def _complete_pass(self, _: Any = None, epoch: int | None = None) -> None:
        epoch = int(self.state.epoch if epoch is None else epoch)
        totals = self._totals_of_all_processes(self._pass_totals)
        summary: dict[str, Any] = {
            "pass": epoch,
            "forget_samples": int(totals.get("forget_samples", 0)),
            "retain_samples": int(totals.get("retain_samples", 0)),
        }
        for key, value in totals.items():
            if key.startswith("sum_"):
                summary[key[4:]] = value / totals[f"count_{key[4:]}"]
        if self.pairing == "flag":
            if summary["forget_samples"] == 0:
                raise ValueError(
                    f"No sample of pass {epoch} had {self.forget_key}=1: the forget rule matched nothing. "
                    "Check the rule of TagForgetd against the datalist."
                )
            # With forget regions (label forgetting) a forget sample keeps its ground truth outside the region, so a
            # pass in which every sample is a forget sample still retains something.
            if summary["retain_samples"] == 0 and self.region_key is None:
                raise ValueError(
                    f"Every sample of pass {epoch} had {self.forget_key}=1: the forget set is the whole "
                    "training set, so nothing would be retained. Narrow the forget rule or retrain from scratch."
                )
        self.history.append(summary)
        for key in ("flip_rate", "forget_loss", "retain_loss"):
            if key in summary:
                self.state.metrics[key] = summary[key]
        details = ", ".join(f"{k} {v:.4g}" for k, v in summary.items() if k != "pass")
        logger.info("Unlearning pass %d/%d (%s): %s", epoch, self.state.max_epochs, self.method.name, details)
        self.method.on_pass_completed(self)

    def _totals_of_all_processes(self, totals: dict[str, float]) -> dict[str, float]:
        """Sum the pass totals of all processes under ``torch.distributed``; return ``totals`` in a single process."""
        if not self._distributed or idist.get_world_size() < 2:
            return totals
        # JSON strings, because the processes' totals may have different keys (a process without forget samples has
        # no forget loss), and idist.all_gather gathers strings of any length.
        merged: dict[str, float] = {}
        for text in idist.all_gather(json.dumps(totals, sort_keys=True)):
            for key, value in json.loads(text).items():
                merged[key] = merged.get(key, 0.0) + float(value)
        return merged

    def _start_pass(self, _: Any = None) -> None:
        # Runs after the STARTED handlers (so after CheckpointLoader) and before ignite creates the loader iterator,
        # so that a method's setup may iterate the loaders itself.
        self._ensure_ready()
        if not self.method.needs_optimizer_steps:
            logger.info(
                "Method %s changed the weights in its setup and takes no optimizer step; the revision ends here.",
                self.method.name,
            )
            self.terminate()

    def _finalize_method(self, _: Any = None) -> None:
        self._complete_unfinished_pass()
        self.method.finalize(self)

    # ------------------------------------------------------------------------------------------------ state
    def state_dict(self) -> Any:
        """Return ignite's engine state plus the unlearning state under ``"unlearning"``.

        The unlearning state contains the frozen original's weights, the generator state, the method state, the pass
        history, the totals of the current pass and the random state (see :meth:`load_state_dict`).
        """
        state = super().state_dict()
        original = None if self.original_network is None else unwrap_network(self.original_network).state_dict()
        if original is None and self._pending_original_state is not None:
            original = self._pending_original_state
        state["unlearning"] = {
            "original_network": original,
            "generator": self.generator.get_state(),
            "method": self.method.state_dict(),
            "history": [dict(h) for h in self.history],
            "pass_totals": dict(self._pass_totals),
            "random_state": {
                "epoch_start": self._epoch_random_state,
                "current": capture_random_state(self._random_objects()),
                "retain_start": self._retain_random_state if self._retain_iterator is not None else None,
                "retain_batches": self._retain_batches_drawn,
                "retain_epoch": self._retain_epoch,
            },
        }
        return state

    def load_state_dict(self, state_dict: Any) -> None:
        """Restore the state saved by :meth:`state_dict` (the original network is rebuilt at the next iteration).

        When the state contains a random state, the next :meth:`run` continues the data stream exactly: it restores the
        random state saved when the interrupted epoch's data iterator was made, makes the iterator again and draws
        the batches the interrupted run had already used (so the shuffling order, the positions of the forget and
        retain loaders and the augmentation state are those of an uninterrupted run), then restores the random state
        of the moment of the checkpoint. For a state saved at the end of a pass, that pass's summary is written at
        the next pass start (or at COMPLETED). States without these entries (older checkpoints) load as before.

        Note:
            Exact continuation assumes that the data pipeline is the same as in the interrupted run, that its
            random transforms draw from MONAI's per-transform generators (``Randomizable.R``) or the global ones,
            that the training loader has a length, and that the loaders do not keep worker processes between
            epochs (``persistent_workers=False``).
        """
        state_dict = dict(state_dict)
        extra = state_dict.pop("unlearning", None)
        super().load_state_dict(state_dict)
        if extra is None:
            return
        if extra.get("original_network") is not None:
            self._pending_original_state = extra["original_network"]
            self.original_network = None
        if extra.get("generator") is not None:
            self.generator.set_state(extra["generator"].cpu() if hasattr(extra["generator"], "cpu") else extra["generator"])
        self.method.load_state_dict(extra.get("method") or {})
        self.history = [dict(h) for h in extra.get("history", [])]
        if extra.get("random_state") is not None:
            self._pending_resume = extra["random_state"]
        totals = extra.get("pass_totals")
        if totals is not None:
            length = self.state.epoch_length
            if length and self.state.iteration % length:
                self._restored_pass_totals = dict(totals)
            elif self.state.iteration and len(self.history) < self.state.epoch:
                # Saved after the last iteration of a pass but before its summary, which the next event writes.
                self._pass_totals = dict(totals)
                self._unfinished_pass = int(self.state.epoch)

    # ------------------------------------------------------------------------------------------------ resume
    def _random_objects(self) -> list[Any]:
        return random_objects([self.data_loader, self.retain_loader])

    # NOTE: these two overrides rely on private hooks of ignite's Engine (checked with pytorch-ignite 0.5.5); the
    # resume tests fail if a later ignite renames them.
    def _setup_dataloader_iter(self) -> None:  # overrides ignite's (private) hook that makes each data iterator
        self._epoch_random_state = capture_random_state(self._random_objects())
        super()._setup_dataloader_iter()

    def _setup_engine(self) -> None:  # overrides ignite's (private) hook called before the first epoch of run()
        resume, self._pending_resume = self._pending_resume, None
        if resume is None:
            super()._setup_engine()
            return
        objects = self._random_objects()
        self._replay_retain(resume, objects)
        length = self.state.epoch_length
        position = self.state.iteration % length if length else 0
        if position and resume.get("epoch_start") is not None:
            restore_random_state(resume["epoch_start"], objects)
            super()._setup_engine()
            for _ in range(position):
                next(self._dataloader_iter)  # type: ignore[arg-type]
            restore_random_state(resume["current"], objects)
        else:
            restore_random_state(resume["current"], objects)
            super()._setup_engine()
        logger.info("Resumed at iteration %d (pass %d): replayed %d batches of the pass.", self.state.iteration,
                    self.state.epoch, position)

    def _replay_retain(self, resume: dict[str, Any], objects: list[Any]) -> None:
        """Make the retain iterator again and draw the batches the interrupted run had drawn from it."""
        self._retain_epoch = int(resume.get("retain_epoch", 0))
        self._retain_iterator = None
        if resume.get("retain_start") is None or self.retain_loader is None:
            return
        restore_random_state(resume["retain_start"], objects)
        sampler = getattr(self.retain_loader, "sampler", None)
        if isinstance(sampler, DistributedSampler) and self._retain_epoch:
            sampler.set_epoch(self._retain_epoch)
        self._new_retain_iterator()
        for _ in range(int(resume.get("retain_batches", 0))):
            next(self._retain_iterator)  # type: ignore[arg-type]
        self._retain_batches_drawn = int(resume.get("retain_batches", 0))

    def _new_retain_iterator(self) -> None:
        self._retain_random_state = capture_random_state(self._random_objects())
        self._retain_iterator = iter(self.retain_loader)  # type: ignore[arg-type]
        self._retain_batches_drawn = 0

    # ------------------------------------------------------------------------------------------------ setup
    def _ensure_ready(self) -> None:
        if self.original_network is None:
            # A copy of the unwrapped module: no DDP wrapper (the frozen network takes no gradient step, so it needs no
            # gradient all-reduce) and no compiled wrapper (compiled again below when the trainer compiles).
            original = frozen_copy(unwrap_network(self.network))
            if self._pending_original_state is not None:
                original.load_state_dict(self._pending_original_state)
                self._pending_original_state = None
            self.original_network = self._prepare_original(original)
        if not self._method_ready:
            self.method.setup(self)
            self._method_ready = True
            # A method's setup may change the network's modules, so the BatchNorm layers are listed after it.
            self._batchnorm_modules = None

    def _prepare_original(self, original: torch.nn.Module) -> torch.nn.Module:
        """Freeze the original network and give it the trainable network's memory format and compilation."""
        original.eval()
        original.requires_grad_(False)
        if self.memory_format is not None:
            unwrap_network(original).to(memory_format=self.memory_format)
        if self.compile and not hasattr(original, "_orig_mod"):
            original = torch.compile(original, **self.compile_kwargs)
            original.eval()
        return original

    def _batchnorm_layers(self) -> list[_BatchNorm]:
        # Listed once instead of scanning the network's modules at every outer step.
        # NOTE: a method that swaps BatchNorm modules after its setup must set _batchnorm_modules to None.
        if self._batchnorm_modules is None:
            self._batchnorm_modules = [m for m in self.network.modules() if isinstance(m, _BatchNorm)]
        return self._batchnorm_modules

    def _apply_batchnorm_policy(self) -> None:
        self.network.train()
        if self.batchnorm == "train":
            return
        for module in self._batchnorm_layers():
            module.eval()

    def _drop_batchnorm_gradients(self) -> None:
        for module in self._batchnorm_layers():
            for parameter in module.parameters(recurse=False):
                parameter.grad = None

    # ------------------------------------------------------------------------------------------------ batches
    def _prepare(self, batchdata: Any) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self.prepare_batch(batchdata, self.state.device, self.non_blocking, **self.to_kwargs)
        inputs, targets = batch[0], batch[1]
        if targets is None:
            raise ValueError("The batch has no label; unlearning needs the labels of forget and retain samples.")
        inputs = _plain(inputs)
        if self.memory_format is not None and inputs.dim() == (5 if self.memory_format == torch.channels_last_3d else 4):
            inputs = inputs.contiguous(memory_format=self.memory_format)
        return inputs, _plain(targets)

    def _region(self, batchdata: Any) -> torch.Tensor | None:
        if self.region_key is None:
            return None
        if not isinstance(batchdata, dict) or self.region_key not in batchdata:
            raise ValueError(
                f"region_key={self.region_key!r} is set but the batch has no such key; "
                "write the forget region in the preprocessing or set region_key=None."
            )
        return _plain(batchdata[self.region_key]).to(self.state.device).bool()

    def _flags(self, batchdata: Any, batch_size: int) -> torch.Tensor:
        """Return the batch's forget flags as booleans, where the loader left them (the CPU for collated batches).

        They stay there so that the checks and the split below need no transfer from the device.
        """
        if not isinstance(batchdata, dict) or self.forget_key not in batchdata:
            keys = sorted(batchdata) if isinstance(batchdata, dict) else type(batchdata).__name__
            raise ValueError(
                f"The batch has no forget flag {self.forget_key!r} (batch keys: {keys}). Add "
                "monai_unlearn.transforms.TagForgetd to the preprocessing before collation, or give separate forget "
                "and retain loaders (retain_loader=...)."
            )
        raw = batchdata[self.forget_key]
        flags = torch.as_tensor(_plain(raw) if torch.is_tensor(raw) else raw).reshape(-1)
        if flags.numel() != batch_size:
            raise ValueError(
                f"The forget flag {self.forget_key!r} has {flags.numel()} values for a batch of {batch_size} samples; "
                "write one integer flag per sample before any transform that makes several crops."
            )
        if flags.numel() and not bool(((flags == 0) | (flags == 1)).all()):
            raise ValueError(f"Forget flags must be 0 or 1, got values {sorted(set(flags.tolist()))}.")
        return flags.bool()

    def _split_positions(self, flags: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the positions of the forget and of the retain samples, on the trainer's device.

        Selecting with position tensors made from the flags where they are gives the same samples in the same order
        as boolean-mask indexing on the device, without the device-to-host synchronisation that a boolean mask costs.
        """
        forget = flags.nonzero().reshape(-1)
        retain = (~flags).nonzero().reshape(-1)
        device = self.state.device
        return forget.to(device, non_blocking=self.non_blocking), retain.to(device, non_blocking=self.non_blocking)

    @staticmethod
    def _select(tensor: torch.Tensor | None, positions: torch.Tensor) -> torch.Tensor | None:
        return None if tensor is None else tensor.index_select(0, positions)

    def _flag_split(
        self, images: torch.Tensor, labels: torch.Tensor, region: torch.Tensor | None, flags: torch.Tensor, retain: bool
    ) -> tuple[UnlearningBatch | None, UnlearningBatch | None]:
        forget_positions, retain_positions = self._split_positions(flags)
        self._last_split = (forget_positions, retain_positions)
        forget_batch = retain_batch = None
        if forget_positions.numel():
            forget_batch = UnlearningBatch(
                images=images.index_select(0, forget_positions),
                labels=labels.index_select(0, forget_positions),
                region=self._select(region, forget_positions),
            )
        if retain and retain_positions.numel():
            retain_batch = UnlearningBatch(
                images=images.index_select(0, retain_positions), labels=labels.index_select(0, retain_positions)
            )
        return forget_batch, retain_batch

    def _next_retain_batch(self) -> UnlearningBatch:
        if self._retain_iterator is None:
            self._new_retain_iterator()
        try:
            batchdata = next(self._retain_iterator)  # type: ignore[arg-type]
        except StopIteration:
            self._retain_epoch += 1
            sampler = getattr(self.retain_loader, "sampler", None)
            if isinstance(sampler, DistributedSampler):
                sampler.set_epoch(self._retain_epoch)
            self._new_retain_iterator()
            batchdata = next(self._retain_iterator)  # type: ignore[arg-type]
        self._retain_batches_drawn += 1
        images, labels = self._prepare(batchdata)
        retain = UnlearningBatch(images=images, labels=labels)
        # Batches of the training loader are checked whole in _split_batch; retain batches come from their own loader.
        self._check_finite(retain, "retain")
        return retain

    def _split_batch(self, batchdata: Any) -> tuple[UnlearningBatch | None, UnlearningBatch | None]:
        images, labels = self._prepare(batchdata)
        self._check_finite_batch(batchdata, images)
        region = self._region(batchdata)
        self._last_images, self._last_labels, self._last_split = images, labels, None
        if self.pairing == "loaders":
            if isinstance(batchdata, dict) and self.forget_key in batchdata:
                flags = self._flags(batchdata, images.shape[0])
                if not bool(flags.all()):
                    raise ValueError(
                        f"The forget loader yielded samples with {self.forget_key}=0; with pairing='loaders' every "
                        "sample of the training loader must be a forget sample."
                    )
            forget = UnlearningBatch(images=images, labels=labels, region=region)
            retain = self._next_retain_batch() if self.method.uses_retain else None
            return forget, retain
        flags = self._flags(batchdata, images.shape[0])
        # Without a retain term no retain batch is copied out of the training batch; _iteration still counts its
        # retain samples from the split positions.
        return self._flag_split(images, labels, region, flags, retain=self.method.uses_retain)

    def iterate_batches(self, retain: bool = True) -> Iterator[tuple[UnlearningBatch | None, UnlearningBatch | None]]:
        """Iterate once over the training data and yield ``(forget, retain)`` batches, outside the engine's loop.

        Methods that need statistics of the data before their first outer step (SalUn's saliency mask, SSD's
        importances) call it from :meth:`UnlearningMethod.setup`, which runs before the engine iterates the loaders.
        With ``pairing="flag"`` every batch of the training loader is split by its forget flag. With
        ``pairing="loaders"`` the forget loader is iterated first (retain side None). The retain loader follows
        (forget side None) when ``retain`` is True and there is one. The batches go through the loaders' own
        transforms, random augmentations included.

        Args:
            retain: also yield the retain samples; False yields forget batches only (retain side None).

        Raises:
            ValueError: for the batch errors described in the class docstring (missing flag, missing label, ...).
        """
        if self.pairing == "flag":
            for batchdata in self.data_loader:
                images, labels = self._prepare(batchdata)
                flags = self._flags(batchdata, images.shape[0])
                region = self._region(batchdata)
                forget, retain_batch = self._flag_split(images, labels, region, flags, retain=retain)
                self._last_split = None
                if forget is not None or retain_batch is not None:
                    yield forget, retain_batch
            return
        for batchdata in self.data_loader:
            images, labels = self._prepare(batchdata)
            yield UnlearningBatch(images=images, labels=labels, region=self._region(batchdata)), None
        if retain and self.retain_loader is not None:
            for batchdata in self.retain_loader:
                images, labels = self._prepare(batchdata)
                yield None, UnlearningBatch(images=images, labels=labels)

    def _check_finite_batch(self, batchdata: Any, images: torch.Tensor) -> None:
        """Raise for NaN or infinite images, naming their source files when the batch carries them."""
        if not self.check_inputs or bool(torch.isfinite(images).all()):
            return
        bad = (~torch.isfinite(images.reshape(images.shape[0], -1))).any(dim=1).nonzero().reshape(-1).tolist()
        source = batchdata.get(Keys.IMAGE) if isinstance(batchdata, dict) else None
        names = getattr(source, "meta", {}).get("filename_or_obj") if source is not None else None
        if isinstance(names, (list, tuple)) and len(names) == images.shape[0]:
            where = "files " + ", ".join(repr(str(names[i])) for i in bad[:5])
        else:
            where = f"batch positions {bad[:5]}"
        raise ValueError(
            f"{len(bad)} image(s) of iteration {self.state.iteration} contain NaN or infinite values ({where}). Fix "
            "or remove these images, or add a preprocessing step that replaces missing values, before unlearning."
        )

    def _check_finite(self, batch: UnlearningBatch | None, side: str) -> None:
        if batch is None or not self.check_inputs:
            return
        if not bool(torch.isfinite(batch.images).all()):
            raise ValueError(
                f"The {side} images of iteration {self.state.iteration} contain NaN or infinite values; "
                "fix the preprocessing (for example scale intensities and replace missing values) before unlearning."
            )

    # ------------------------------------------------------------------------------------------------ iteration
    def _iteration(self, engine: UnlearningTrainer, batchdata: Any) -> dict:  # type: ignore[override]
        """Run one outer step and return the outputs that MONAI handlers read.

        Returns a dictionary with ``image``, ``label`` and ``pred`` (forget samples first, then retain samples),
        ``loss``, the counts ``forget_samples`` and ``retain_samples``, and the method's scalar diagnostics.

        Raises:
            ValueError: when ``batchdata`` is None or the batch fails the checks described in the class docstring.
        """
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        engine._ensure_ready()

        forget, retain = engine._split_batch(batchdata)
        # Counted before the method's needs drop a side, so the pass summary shows what the loader delivered.
        forget_count = 0 if forget is None else len(forget)
        retain_count = 0 if retain is None else len(retain)
        if engine._last_split is not None:
            # Flag mode: the retain samples of the batch count even when no retain batch was built for them.
            retain_count = int(engine._last_split[1].numel())
        if not engine.method.uses_forget:
            forget = None
        if not engine.method.uses_retain:
            retain = None
        # The images were checked for NaN and infinite values whole in _split_batch, and retain batches of a retain
        # loader when they were drawn, so the forget and retain sides need no second check here.

        engine._apply_batchnorm_policy()
        engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)

        output: dict[str, Any] = {}
        has_work = forget is not None or retain is not None
        if not engine._work_on_any_process(has_work):
            # A flag-mode batch with only retain samples while the method has no retain term: nothing to learn.
            # The batch's predictions still go out, so that the bundle's postprocessing and metrics find "pred".
            output.update(engine._predict_without_step())
            output[Keys.LOSS] = torch.zeros((), device=engine.state.device)
            engine._accumulate({}, forget_count, retain_count)
            engine.state.output = output
            engine.fire_event(IterationEvents.MODEL_COMPLETED)
            return engine.state.output

        if not has_work:
            # Under torch.distributed another process has something to learn in this step: this one joins the gradient
            # all-reduce with a zero gradient.
            step, outputs = engine._zero_step()
            output.update(outputs)
        elif engine.amp and engine.scaler is not None:
            with torch.autocast("cuda", **engine.amp_kwargs):
                step = engine.method.compute_loss(engine, forget, retain)
            output.update(self._collect_outputs(forget, retain, step.forget_logits, step.retain_logits))
        else:
            step = engine.method.compute_loss(engine, forget, retain)
            output.update(self._collect_outputs(forget, retain, step.forget_logits, step.retain_logits))
        engine.state.output = output
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)

        output[Keys.LOSS] = step.loss.detach()
        engine.fire_event(IterationEvents.LOSS_COMPLETED)

        if engine.amp and engine.scaler is not None:
            engine.scaler.scale(step.loss).backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            engine.scaler.unscale_(engine.optimizer)
            engine.method.before_optimizer_step(engine)
            if engine.batchnorm == "frozen":
                engine._drop_batchnorm_gradients()
            engine.scaler.step(engine.optimizer)
            engine.scaler.update()
        else:
            step.loss.backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            engine.method.before_optimizer_step(engine)
            if engine.batchnorm == "frozen":
                engine._drop_batchnorm_gradients()
            engine.optimizer.step()

        output["forget_samples"] = forget_count
        output["retain_samples"] = retain_count
        metrics = _scalar_metrics(step.metrics)
        output.update(metrics)
        engine._accumulate(metrics, forget_count, retain_count)
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        # Return the attribute, not the local dict: MONAI's decollate handler replaces it at MODEL_COMPLETED.
        return engine.state.output

    def _work_on_any_process(self, has_work: bool) -> bool:
        """Return whether this process, or under ``torch.distributed`` any process, has something to learn.

        Only flag-mode runs of methods that ignore one side can meet a batch with nothing to learn, so only they pay
        for the all-reduce of the answer (one small collective per outer step).
        """
        if not self._distributed or self.pairing != "flag" or (self.method.uses_forget and self.method.uses_retain):
            return has_work
        if idist.get_world_size() < 2:
            return has_work
        return bool(idist.all_reduce(float(has_work), op="MAX"))

    def _zero_step(self) -> tuple[StepOutput, dict[str, torch.Tensor]]:
        """Return a loss with zero gradient for every parameter, and the current batch's outputs.

        The network runs in eval mode, so that no BatchNorm running statistic moves, as in a step without work.
        """
        self.network.eval()
        try:
            logits = self.method.predict(self, self._last_images)
        finally:
            self._apply_batchnorm_policy()
        loss = logits.float().sum() * 0.0
        outputs = {Keys.IMAGE: self._last_images, Keys.LABEL: self._last_labels, Keys.PRED: logits.detach()}
        return StepOutput(loss=loss), outputs

    def _predict_without_step(self) -> dict[str, torch.Tensor]:
        """Return image, label and pred of the current batch, predicted in eval mode so no BatchNorm statistic moves."""
        if self._last_images is None:
            return {}
        self.network.eval()
        try:
            with torch.no_grad():
                pred = self.method.predict(self, self._last_images)
        finally:
            self._apply_batchnorm_policy()
        return {Keys.IMAGE: self._last_images, Keys.LABEL: self._last_labels, Keys.PRED: pred}

    def _accumulate(self, metrics: dict[str, float], forget_count: int, retain_count: int) -> None:
        totals = self._pass_totals
        totals["forget_samples"] = totals.get("forget_samples", 0.0) + forget_count
        totals["retain_samples"] = totals.get("retain_samples", 0.0) + retain_count
        for key, value in metrics.items():
            totals[f"sum_{key}"] = totals.get(f"sum_{key}", 0.0) + float(value)
            totals[f"count_{key}"] = totals.get(f"count_{key}", 0.0) + 1

    def _collect_outputs(
        self,
        forget: UnlearningBatch | None,
        retain: UnlearningBatch | None,
        forget_logits: torch.Tensor | None,
        retain_logits: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        """Return image, label and pred aligned with ``engine.state.batch``, as MONAI's postprocessing expects.

        MONAI pairs the i-th decollated batch item with the i-th output item. So with ``pairing="loaders"`` the
        outputs are the forget samples (the batch), and with ``pairing="flag"`` they are the batch's samples in
        batch order, or only its forget samples when the method computed no retain outputs. When a method computes
        no forget outputs under ``pairing="loaders"`` (fine-tuning on the retain set), the forget batch is predicted
        without gradients in eval mode, so that the bundle's postprocessing and metrics still get one output per item.
        """
        has_forget = forget is not None and forget_logits is not None
        has_retain = retain is not None and retain_logits is not None
        split = self._last_split
        if self.pairing == "flag" and has_forget and has_retain and split is not None:
            forget_positions, retain_positions = split
            size = forget_positions.shape[0] + retain_positions.shape[0]
            pred = forget_logits.detach().new_empty((size, *forget_logits.shape[1:]))
            pred.index_copy_(0, forget_positions, forget_logits.detach())
            pred.index_copy_(0, retain_positions, retain_logits.detach().to(pred.dtype))
            return {Keys.IMAGE: self._last_images, Keys.LABEL: self._last_labels, Keys.PRED: pred}
        if has_forget:
            return {Keys.IMAGE: forget.images, Keys.LABEL: forget.labels, Keys.PRED: forget_logits.detach()}
        if has_retain and self.pairing == "flag":
            return {Keys.IMAGE: retain.images, Keys.LABEL: retain.labels, Keys.PRED: retain_logits.detach()}
        if self.pairing == "loaders":
            return self._predict_without_step()
        return {}
