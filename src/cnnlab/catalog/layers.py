"""Registries of the course's building blocks: activation functions and pooling.

The names are known without torch (the config and ``--help`` ask them); torch is imported when a layer is
built.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from cnnlab.catalog.registry import Registry

if TYPE_CHECKING:
    from torch import nn

# An activation builder takes the channel/feature count (PReLU learns one slope per channel).
ACTIVATIONS: Registry = Registry("activation")
POOLING: Registry = Registry("pooling")


@ACTIVATIONS.register("relu")
def relu(channels: int) -> nn.Module:
    from torch import nn

    return nn.ReLU(inplace=True)


@ACTIVATIONS.register("sigmoid")
def sigmoid(channels: int) -> nn.Module:
    from torch import nn

    return nn.Sigmoid()


@ACTIVATIONS.register("tanh")
def tanh(channels: int) -> nn.Module:
    from torch import nn

    return nn.Tanh()


@ACTIVATIONS.register("leaky_relu")
def leaky_relu(channels: int) -> nn.Module:
    from torch import nn

    return nn.LeakyReLU(0.01, inplace=True)


@ACTIVATIONS.register("prelu")
def prelu(channels: int) -> nn.Module:
    from torch import nn

    return nn.PReLU(num_parameters=channels)


@ACTIVATIONS.register("elu")
def elu(channels: int) -> nn.Module:
    from torch import nn

    return nn.ELU(inplace=True)


@ACTIVATIONS.register("swish", "silu")
def swish(channels: int) -> nn.Module:
    from torch import nn

    return nn.SiLU(inplace=True)


@ACTIVATIONS.register("gelu")
def gelu(channels: int) -> nn.Module:
    from torch import nn

    return nn.GELU()


@ACTIVATIONS.register("glu")
def glu(channels: int) -> nn.Module:
    from torch import nn

    # GLU halves dim 1 (channels for conv maps, features for dense layers): a*sigmoid(b).
    return nn.GLU(dim=1)


@ACTIVATIONS.register("softmax")
def softmax(channels: int) -> nn.Module:
    from torch import nn

    # As a hidden activation: a distribution over the channels at every position.
    return nn.Softmax(dim=1)


def width_factor(activation: str) -> int:
    """How many more outputs a layer needs before this activation (GLU consumes half)."""
    return 2 if activation == "glu" else 1


@POOLING.register("max")
def max_pool(size: int, stride: int) -> nn.Module:
    from torch import nn

    return nn.MaxPool2d(size, stride)


@POOLING.register("avg")
def avg_pool(size: int, stride: int) -> nn.Module:
    from torch import nn

    return nn.AvgPool2d(size, stride)


@POOLING.register("none")
def no_pool(size: int, stride: int) -> nn.Module:
    from torch import nn

    return nn.Identity()
