# Copyright (c) monai_unlearn developers
# Licensed under the Apache License, Version 2.0 (the "License").
"""Find a network's output layer and add or remove output channels in place.

Boundary Expanding (:mod:`monai_unlearn.baselines.boundary_expanding`) uses it to give the network a temporary shadow
class: the last linear layer of a classifier, or the last convolution of a segmenter, gets one more output channel,
and loses it again at the end. The layer's parameters keep their identity (only their data is replaced), so an
optimizer built on ``network.parameters()`` keeps updating them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["OutputLayer", "OUTPUT_LAYER_TYPES", "find_output_layer", "resize_output_channels"]

#: Layer types whose output channels can be resized: linear layers and (transposed) convolutions.
OUTPUT_LAYER_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)


@dataclass
class OutputLayer:
    """The layer that produces a network's output channels.

    Attributes:
        name: the layer's name in ``network.named_modules()``.
        module: the layer itself.
        out_channels: its number of output channels.
    """

    name: str
    module: nn.Module
    out_channels: int


def _out_channels(module: nn.Module) -> int:
    return int(module.out_features if isinstance(module, nn.Linear) else module.out_channels)


def _channel_dim(module: nn.Module) -> int:
    # Transposed convolutions store their weights as (in, out / groups, *kernel).
    return 1 if isinstance(module, nn.modules.conv._ConvTransposeNd) else 0


def find_output_layer(
    network: nn.Module, example: torch.Tensor, layer_name: str | None = None, method: str = "boundary_expanding"
) -> OutputLayer:
    """Return the layer whose output is the network's output, found by running ``network`` on ``example``.

    Without ``layer_name``, the layer is the last linear or convolution layer (in execution order) whose output has
    the shape of the network's output; a softmax or another shape-keeping operation after it is allowed. With
    ``layer_name``, that layer is checked instead. The network runs under ``torch.no_grad`` in its current mode (use
    a network in eval mode, such as the frozen original, so that no BatchNorm statistic changes).

    Raises:
        ValueError: when no such layer exists (for example the output layer is not a linear or convolution layer, or
            a reshape follows it), or when ``layer_name`` names no layer, a layer of another type, or a layer whose
            output is not the network's output. The message names the method and the layers it saw.
    """
    modules = dict(network.named_modules())
    if layer_name is not None and layer_name not in modules:
        raise ValueError(f"{method}: the network has no layer named {layer_name!r}; check layer_name.")
    executed: list[tuple[str, torch.Size]] = []
    hooks = [
        module.register_forward_hook(lambda _m, _i, out, name=name: executed.append((name, tuple(out.shape))))
        for name, module in modules.items()
        if isinstance(module, OUTPUT_LAYER_TYPES)
    ]
    try:
        with torch.no_grad():
            output = network(example)
    finally:
        for hook in hooks:
            hook.remove()
    if not torch.is_tensor(output):
        raise ValueError(f"{method}: the network returned {type(output).__name__}, not one tensor of logits.")
    candidates = [name for name, shape in executed if shape == tuple(output.shape)]
    seen = ", ".join(f"{name} {list(shape)}" for name, shape in executed[-5:]) or "none"
    if layer_name is not None:
        if not isinstance(modules[layer_name], OUTPUT_LAYER_TYPES):
            raise ValueError(
                f"{method}: layer {layer_name!r} is a {type(modules[layer_name]).__name__}; the output layer must be a "
                "linear or convolution layer."
            )
        if layer_name not in candidates:
            raise ValueError(
                f"{method}: the output of layer {layer_name!r} does not have the network's output shape "
                f"{list(output.shape)}; last linear/convolution layers run: {seen}."
            )
        name = layer_name
    elif candidates:
        name = candidates[-1]
    else:
        raise ValueError(
            f"{method} could not find the network's output layer: no linear or convolution layer produces an output "
            f"of the network's output shape {list(output.shape)} (last such layers run: {seen}). The method needs "
            "the layer that produces the class channels; pass its name as layer_name, or use another method."
        )
    module = modules[name]
    if getattr(module, "groups", 1) != 1:
        raise ValueError(f"{method}: output layer {name!r} is a grouped convolution; its channels cannot be resized.")
    return OutputLayer(name=name, module=module, out_channels=_out_channels(module))


@torch.no_grad()
def resize_output_channels(layer: nn.Module, channels: int, generator: torch.Generator | None = None) -> None:
    """Give ``layer`` ``channels`` output channels in place: keep the first ones, add new ones at the end.

    New channels are initialised like a fresh PyTorch layer: weights and bias uniform in ``+-1/sqrt(fan_in)``, drawn
    from ``generator``. Gradients of the resized parameters are dropped, because they no longer fit.

    Raises:
        ValueError: for a layer type that is not supported or a channel count below 1.
    """
    if not isinstance(layer, OUTPUT_LAYER_TYPES):
        raise ValueError(f"Cannot resize the output channels of a {type(layer).__name__}.")
    if channels < 1:
        raise ValueError(f"A layer needs at least 1 output channel, got {channels}.")
    current = _out_channels(layer)
    dim = _channel_dim(layer)
    weight = layer.weight
    fan_in = weight.shape[1 - dim] * math.prod(weight.shape[2:])  # input channels times kernel size
    bound = 1.0 / math.sqrt(max(fan_in, 1))

    def resized(tensor: torch.Tensor, channel_dim: int) -> torch.Tensor:
        if channels <= current:
            return tensor.narrow(channel_dim, 0, channels).clone()
        shape = list(tensor.shape)
        shape[channel_dim] = channels - current
        device = generator.device if generator is not None else tensor.device
        extra = torch.rand(shape, generator=generator, device=device, dtype=torch.float32).to(tensor.device)
        extra = (extra * 2.0 - 1.0) * bound
        return torch.cat([tensor, extra.to(tensor.dtype)], dim=channel_dim)

    weight.data = resized(weight.data, dim)
    weight.grad = None
    if layer.bias is not None:
        layer.bias.data = resized(layer.bias.data, 0)
        layer.bias.grad = None
    if isinstance(layer, nn.Linear):
        layer.out_features = channels
    else:
        layer.out_channels = channels
