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
        # Regression on standardised targets: the network predicts (y - mean) / std, and this undoes it, so
        # every output (metrics, prediction, serving, export) is in the targets' own units.
        self.target_scale = None
        if pre.target_mean is not None:
            self.target_scale = TargetScale(pre.target_mean, pre.target_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(self.normalize(x))
        if self.target_scale is not None:
            out = tuple(map(self.target_scale, out)) if isinstance(out, tuple) else self.target_scale(out)
        return out


class TargetScale(nn.Module):
    """Standardised outputs -> the targets' units: ``out x std + mean`` (the values live in preprocessing.json)."""

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(float(mean)), persistent=False)
        self.register_buffer("std", torch.tensor(float(std)), persistent=False)

    def forward(self, out: torch.Tensor) -> torch.Tensor:
        return out * self.std + self.mean
