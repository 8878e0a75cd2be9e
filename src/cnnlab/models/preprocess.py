"""A model with its preprocessing in front: uint8 in, normalised float through the network, so training,
evaluation, prediction, serving and export cannot disagree (the spec itself: ``cnnlab.preprocessing``).
"""
from __future__ import annotations

import torch
from torch import nn

from cnnlab.preprocessing import Preprocessing


class Normalize(nn.Module):
    """uint8 (or float in [0, 1]) images -> (x - mean) / std, as float32."""

    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        # Not persistent: the weights file holds network weights only; these live in preprocessing.json.
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        return (x - self.mean) / self.std


class ImageModel(nn.Module):
    """A network with its preprocessing in front: the unit that is trained, saved and served."""

    def __init__(self, net: nn.Module, pre: Preprocessing) -> None:
        super().__init__()
        self.pre = pre
        self.normalize = Normalize(pre.mean, pre.std)
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))
