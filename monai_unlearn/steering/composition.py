# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Model composition: the feature extractor of one unlearning run with the prediction head of another.

Two revisions of a bundle often sit at different points of the forget/retain trade-off. Composition takes the
extractor of the run that kept the retain set best and the head of the run that forgot best, and can fine-tune the
result on the retain set (the head only, or all layers). The split between extractor and head is found from the
network: the last linear layer of a classifier or the final 1x1 convolution of a segmenter, or a module named by the
caller. This follows the model composition step of Nahass et al., "Targeted Unlearning Using Perturbed Sign Gradient
Methods With Applications On Medical Images", arXiv:2505.21872 (2025).

In the flow transform -> engine -> inner search -> loss -> handlers, composition runs after the revisions: it reads
their weights and, for the fine-tune, runs the unlearning trainer with the ``finetune`` baseline on the retain set.
:func:`compose` returns a network, so a bundle config can use it as its ``network_def``::

    "network_def": {
        "_target_": "monai_unlearn.steering.compose",
        "network": {"_target_": "DenseNet", "spatial_dims": 2, "in_channels": 1, "out_channels": 3},
        "extractor_from": "$@bundle_root + '/models/run_retain.pt'",
        "head_from": "$@bundle_root + '/models/run_forget.pt'"
    }
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from monai_unlearn.baselines.output_layer import find_output_layer
from monai_unlearn.engines.unlearning_trainer import unwrap_network

from .weights import WeightSource, check_same_layout, load_state

__all__ = ["FINETUNE_MODES", "HeadSplit", "compose", "find_head", "default_example_input"]

logger = logging.getLogger(__name__)

FINETUNE_MODES = ("none", "head", "all")

_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass
class HeadSplit:
    """The split of a network into feature extractor and head.

    Attributes:
        name: the head module's name in ``network.named_modules()``.
        keys: the state-dict keys of the head (the module's parameters and buffers).
    """

    name: str
    keys: list[str]


def default_example_input(network: nn.Module, spatial_size: int | None = None) -> torch.Tensor:
    """Return a zero input batch of 2 samples that fits the first convolution or linear layer of ``network``.

    The spatial size is 64 for 1-D and 2-D networks and 32 for 3-D networks unless ``spatial_size`` is given. These
    sizes pass the downsampling of MONAI's DenseNet, ResNet, SEResNet, EfficientNet, UNet (strides 2, up to 5 levels),
    SegResNet and BasicUNet.

    Raises:
        ValueError: when the network has no convolution or linear layer to read the input shape from.
    """
    for module in network.modules():
        if isinstance(module, _CONV_TYPES):
            dims = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}[type(module)]
            size = spatial_size or (32 if dims == 3 else 64)
            return torch.zeros(2, module.in_channels, *([size] * dims))
        if isinstance(module, nn.Linear):
            return torch.zeros(2, module.in_features)
    raise ValueError(
        f"Cannot build an example input for {type(network).__name__}: it has no convolution or linear layer. "
        "Pass example_input."
    )


def _head_keys(network: nn.Module, name: str) -> list[str]:
    prefix = f"{name}."
    return [key for key in network.state_dict() if key.startswith(prefix)]


def _top_level_names(network: nn.Module) -> list[str]:
    return [name for name, _ in network.named_children()]


def _enclosing_modules(network: nn.Module, name: str) -> list[str]:
    """Return the modules that contain the layer ``name``, outermost first, leaving out any that hold every weight."""
    parts = name.split(".")
    all_keys = len(network.state_dict())
    prefixes = [".".join(parts[: end + 1]) for end in range(len(parts))]
    return [prefix for prefix in prefixes if len(_head_keys(network, prefix)) < all_keys]


def find_head(network: nn.Module, split: str = "auto", example_input: torch.Tensor | None = None) -> HeadSplit:
    """Return the head of ``network``: the module named by ``split``, or the one found automatically.

    With ``split="auto"`` a copy of the network runs once on ``example_input``, in eval mode and without gradients.
    The head is the layer that produces the network's output, if it is a linear layer or a convolution whose kernel
    is 1 in every dimension. Any other output layer (a 3x3 or transposed convolution, as in MONAI's ``UNet``) has
    spatial context, so the split is ambiguous and has to be named.

    Args:
        network: the network.
        split: ``"auto"`` or a module name from ``network.named_modules()`` (for example ``"class_layers.out"`` or
            ``"model.2"``); everything in that module is the head.
        example_input: a batch the network accepts; None uses :func:`default_example_input`.

    Raises:
        ValueError: when ``split`` names no module or a module without weights, or when the automatic split cannot
            find a linear layer or 1x1 convolution producing the output. The message lists the candidate names.
    """
    network = unwrap_network(network)
    modules = dict(network.named_modules())
    if split != "auto":
        if not isinstance(split, str) or split not in modules or split == "":
            raise ValueError(
                f"compose: invalid split {split!r}; it must be 'auto' or the name of a module of "
                f"{type(network).__name__}, such as one of its top-level modules {_top_level_names(network)}."
            )
        keys = _head_keys(network, split)
        if not keys:
            raise ValueError(f"compose: the split module {split!r} has no parameters or buffers to take as the head.")
        return HeadSplit(name=split, keys=keys)

    probe = copy.deepcopy(network).eval()
    if example_input is None:
        example_input = default_example_input(probe)
    try:
        output_layer = find_output_layer(probe, example_input, method="compose")
    except ValueError as error:
        raise ValueError(
            f"{error} Give the head's module name as split (top-level modules: {_top_level_names(network)})."
        ) from error
    module = output_layer.module
    if isinstance(module, _CONV_TYPES) and any(size != 1 for size in module.kernel_size):
        raise ValueError(
            f"compose could not split {type(network).__name__} automatically: its output layer "
            f"{output_layer.name!r} is a {type(module).__name__} with kernel size {tuple(module.kernel_size)}, not a "
            "linear layer or a 1x1 convolution, so no single layer is the head. Give the head's module name as "
            f"split, for example one of the modules that contain it: {_enclosing_modules(network, output_layer.name)}."
        )
    if not isinstance(module, (nn.Linear, *_CONV_TYPES)):
        raise ValueError(
            f"compose could not split {type(network).__name__} automatically: its output layer {output_layer.name!r} "
            f"is a {type(module).__name__}, not a linear layer or a 1x1 convolution. Give the head's module name as "
            f"split (top-level modules: {_top_level_names(network)})."
        )
    return HeadSplit(name=output_layer.name, keys=_head_keys(network, output_layer.name))


def _template(extractor_from: WeightSource, head_from: WeightSource, network: nn.Module | None) -> nn.Module:
    modules = [source for source in (extractor_from, head_from) if isinstance(source, nn.Module)]
    if len(modules) == 2:
        first, second = (type(unwrap_network(module)) for module in modules)
        if first is not second:
            raise ValueError(
                f"Mismatched architectures: the extractor comes from a {first.__name__} and the head from a "
                f"{second.__name__}. Compose two runs of the same network definition."
            )
    if network is not None:
        if modules and type(unwrap_network(network)) is not type(unwrap_network(modules[0])):
            raise ValueError(
                f"Mismatched architectures: network is a {type(unwrap_network(network)).__name__} but a run is a "
                f"{type(unwrap_network(modules[0])).__name__}."
            )
        return copy.deepcopy(unwrap_network(network))
    if modules:
        return copy.deepcopy(unwrap_network(modules[0]))
    raise ValueError(
        "compose needs a network definition when extractor_from and head_from are both state dicts or checkpoint "
        "paths: pass network (for example the bundle's network_def)."
    )


def compose(
    extractor_from: WeightSource,
    head_from: WeightSource,
    network: nn.Module | None = None,
    split: str = "auto",
    finetune: str = "none",
    finetune_loader: Iterable | None = None,
    finetune_epochs: int = 1,
    finetune_learning_rate: float = 1e-4,
    finetune_batchnorm: str = "eval",
    example_input: torch.Tensor | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> nn.Module:
    """Compose a network from the feature extractor of one run and the head of another.

    The result has the architecture of ``network`` (or of whichever source is a module), every weight outside the
    head from ``extractor_from`` and the head's weights (including its buffers) from ``head_from``. Neither source is
    changed.

    Args:
        extractor_from: the run that gives the feature extractor: a network, a state dict or a checkpoint path.
        head_from: the run that gives the head, in the same forms.
        network: the network definition to fill; required when neither source is a module. Its own weights are not
            used.
        split: ``"auto"`` (the last linear layer, or the final 1x1 convolution) or the head's module name; see
            :func:`find_head`.
        finetune: ``"none"``, ``"head"`` (train the head on the retain set, the extractor frozen) or ``"all"``.
        finetune_loader: the training loader with the forget flag on every sample (the bundle's training loader with
            :class:`~monai_unlearn.transforms.TagForgetd`); the fine-tune steps use its retain samples only. Required
            unless ``finetune="none"``.
        finetune_epochs: passes of the fine-tune over ``finetune_loader``.
        finetune_learning_rate: Adam learning rate of the fine-tune.
        finetune_batchnorm: BatchNorm policy of the fine-tune (see
            :class:`~monai_unlearn.engines.UnlearningTrainer`); ``"eval"`` keeps the running statistics.
        example_input: a batch the network accepts, for the automatic split; None builds one of zeros.
        device: device of the fine-tune and of the returned network.
        seed: seed of the fine-tune's trainer.

    Returns:
        The composed network, on ``device``, in eval mode.

    Raises:
        ValueError: for mismatched architectures (different classes, keys or extractor shapes), heads of different
            shapes, a split that cannot be found, an invalid ``finetune`` mode, or a fine-tune without a loader.
        TypeError: when a source is not a network, a state dict or a path.
        FileNotFoundError: when a checkpoint path does not exist.
    """
    if finetune not in FINETUNE_MODES:
        raise ValueError(f"compose: invalid finetune {finetune!r}; expected one of {FINETUNE_MODES}.")
    if finetune != "none" and finetune_loader is None:
        raise ValueError(
            f"compose: finetune={finetune!r} needs finetune_loader, the training loader with forget flags "
            "(its retain samples are used); pass it or set finetune='none'."
        )
    composed = _template(extractor_from, head_from, network)
    extractor_state = load_state(extractor_from, "extractor_from")
    head_state = load_state(head_from, "head_from")
    template_state = composed.state_dict()
    check_same_layout(template_state, extractor_state, ("the network definition", "extractor_from"))

    head = find_head(composed, split, example_input)
    head_keys = set(head.keys)
    check_same_layout(extractor_state, head_state, ("extractor_from", "head_from"), ignore=head_keys.__contains__)
    differing = [key for key in head.keys if tuple(extractor_state[key].shape) != tuple(head_state[key].shape)]
    if differing:
        details = ", ".join(
            f"{key!r} {list(extractor_state[key].shape)} vs {list(head_state[key].shape)}" for key in differing[:3]
        )
        raise ValueError(
            f"Mismatched heads: the head {head.name!r} of extractor_from and head_from differ in shape ({details}), "
            "for example a different number of output classes or channels. Compose runs with the same outputs."
        )

    merged = {key: (head_state[key] if key in head_keys else extractor_state[key]) for key in template_state}
    composed.load_state_dict(merged)
    logger.info(
        "Composed %s: extractor from %s, head %r (%d tensors) from %s.",
        type(composed).__name__,
        _source_name(extractor_from),
        head.name,
        len(head.keys),
        _source_name(head_from),
    )
    composed = composed.to(device)
    if finetune != "none":
        _finetune(composed, head, finetune, finetune_loader, finetune_epochs, finetune_learning_rate,
                  finetune_batchnorm, device, seed)
    return composed.eval()


def _source_name(source: WeightSource) -> str:
    if isinstance(source, nn.Module):
        return f"a {type(unwrap_network(source)).__name__} module"
    if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
        return repr(str(source))
    return "a state dict"


def _finetune(
    network: nn.Module,
    head: HeadSplit,
    mode: str,
    loader: Iterable,
    epochs: int,
    learning_rate: float,
    batchnorm: str,
    device: str | torch.device,
    seed: int,
) -> None:
    """Fine-tune ``network`` in place on the retain samples of ``loader`` with the ``finetune`` baseline."""
    from monai_unlearn.engines import UnlearningTrainer

    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"compose: invalid finetune_epochs {epochs!r}; it must be an integer >= 1.")
    head_module = dict(network.named_modules())[head.name]
    if mode == "head":
        network.requires_grad_(False)
        head_module.requires_grad_(True)
    parameters: Sequence[nn.Parameter] = [parameter for parameter in network.parameters() if parameter.requires_grad]
    trainer = UnlearningTrainer(
        device=device,
        max_epochs=epochs,
        train_data_loader=loader,
        network=network,
        optimizer=torch.optim.Adam(parameters, lr=learning_rate),
        method="finetune",
        batchnorm=batchnorm,
        seed=seed,
    )
    logger.info("Fine-tuning the composed network (%s, %d parameters) for %d passes.", mode, len(parameters), epochs)
    trainer.run()
    network.requires_grad_(True)
    logger.info("Fine-tuned the composed network.")
