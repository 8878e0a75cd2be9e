"""Small networks in the shape of the four classic families, for small-data comparisons on a CPU.

Each keeps its family's defining unit, taken from the library that ships the full-size network where it can
be reused at a small width: VGG's stacked 3x3 convolutions (torchvision's conv-BN-ReLU), ResNet's basic
residual block (torchvision's ``BasicBlock``), Inception's parallel factorised branches (a 5x5 as two 3x3,
a 3x3 as 3x1 then 1x3, as in Szegedy et al. 2016; torchvision's Inception modules are fixed at ImageNet
widths, so the block is written here from the same conv-BN-ReLU unit) and Xception's depthwise-separable
residual block (timm's ``Block``). All four share a stem (a 3x3 convolution and 2x2 max pooling), map 28x28
to 7x7 in two halvings, end in global average pooling and one linear layer, and have 24,378 to 26,298
parameters at 1x28x28 and 10 classes (within 10% of one another, ``tests/models/test_families.py``), so that
a comparison at the same budget compares shapes, not sizes. They are ``CustomCNN``s, as cnn-small:
``features`` (one stage per resolution) and ``head``.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from cnnlab.config import ModelConfig
from cnnlab.errors import ConfigError
from cnnlab.models.custom import CustomCNN


STEM = 16  # every family starts alike: one 3x3 convolution at full resolution, then 2x2 max pooling


def _conv(cin: int, cout: int, kernel=3, stride: int = 1) -> nn.Module:
    from torchvision.ops import Conv2dNormActivation  # torchvision's conv-BN-ReLU; imported when a net is built

    return Conv2dNormActivation(cin, cout, kernel, stride)


def _net(channels: int, num_outputs: int, body: list[nn.Module], width: int) -> CustomCNN:
    """The shared stem, the family's ``body`` (one stage per resolution), global average pooling, a linear layer."""
    stem = nn.Sequential(_conv(channels, STEM), nn.MaxPool2d(2))
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_outputs))
    return CustomCNN(nn.Sequential(stem, *body), head)


def vgg(channels: int, num_outputs: int, widths=(24, 32)) -> CustomCNN:
    """Simonyan & Zisserman's pattern: stages of two 3x3 convolutions, 2x2 max pooling between them."""
    a, b = widths
    body = [nn.Sequential(_conv(STEM, a), _conv(a, a), nn.MaxPool2d(2)), nn.Sequential(_conv(a, b), _conv(b, b))]
    return _net(channels, num_outputs, body, b)


def resnet(channels: int, num_outputs: int, widths=(16, 40)) -> CustomCNN:
    """He et al.'s basic blocks (two 3x3 convolutions around an identity shortcut); the second block halves
    the map with a stride and projects its shortcut with a strided 1x1 convolution."""
    from torchvision.models.resnet import BasicBlock

    a, b = widths
    down = nn.Sequential(nn.Conv2d(a, b, 1, 2, bias=False), nn.BatchNorm2d(b))
    stem_to_a = nn.Sequential(nn.Conv2d(STEM, a, 1, bias=False), nn.BatchNorm2d(a)) if a != STEM else None
    body = [BasicBlock(STEM, a, downsample=stem_to_a), BasicBlock(a, b, stride=2, downsample=down)]
    return _net(channels, num_outputs, body, b)


class InceptionBlock(nn.Module):
    """Four parallel branches concatenated: 1x1; 1x1 then 3x1 then 1x3 (a factorised 3x3); 1x1 then two 3x3
    (a factorised 5x5); 3x3 average pooling then 1x1. ``w``: each branch's output channels."""

    def __init__(self, cin: int, w: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList([
            _conv(cin, w, 1),
            nn.Sequential(_conv(cin, w, 1), _conv(w, w, (3, 1)), _conv(w, w, (1, 3))),
            nn.Sequential(_conv(cin, w, 1), _conv(w, w), _conv(w, w)),
            nn.Sequential(nn.AvgPool2d(3, 1, 1), _conv(cin, w, 1))])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], 1)


def inception(channels: int, num_outputs: int, widths=(12, 24)) -> CustomCNN:
    """One Inception block per resolution (4 branches of ``w`` channels each), max pooling between them."""
    a, b = widths
    body = [nn.Sequential(InceptionBlock(STEM, a), nn.MaxPool2d(2)), InceptionBlock(4 * a, b)]
    return _net(channels, num_outputs, body, 4 * b)


def xception(channels: int, num_outputs: int, widths=(48, 96)) -> CustomCNN:
    """Chollet's residual blocks of two depthwise-separable 3x3 convolutions (timm's ``Block``): the first
    halves the map (strided max pooling, a strided 1x1 on the shortcut), the second keeps it, as the middle
    flow does."""
    from timm.models.xception import Block

    a, b = widths
    body = [Block(STEM, a, 2, 2, start_with_relu=False), nn.Sequential(Block(a, b, 2, 1), nn.ReLU())]
    return _net(channels, num_outputs, body, b)


# name -> (builder, description): the model registry registers each (``models/registry.py``)
FAMILIES: dict[str, tuple[Callable[..., CustomCNN], str]] = {
    "vgg-small": (vgg, "VGG-shaped, 25k params: stem, then stages of two 3x3 conv (24, 32)"),
    "resnet-small": (resnet, "ResNet-shaped, 26k params: stem, 2 basic residual blocks (16, 40)"),
    "inception-small": (inception, "Inception-shaped, 24k params: stem, 2 blocks of 4 factorised branches"),
    "xception-small": (xception, "Xception-shaped, 26k params: stem, 2 depthwise-separable residual blocks"),
}


def build_family(name: str, cfg: ModelConfig, channels: int, size: tuple[int, int], num_outputs: int) -> CustomCNN:
    """The family network ``name`` for ``channels`` x ``size`` input (``cfg``'s layer keys do not apply: the
    architecture is the name's). Global average pooling takes any size that survives two halvings."""
    if min(size) < 4:
        raise ConfigError(f"input size {size[0]}x{size[1]} is too small for {name}, which halves it twice: "
                          f"use model.input_size 4 or more (28 for MNIST)")
    return FAMILIES[name][0](channels, num_outputs)
