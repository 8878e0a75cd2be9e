"""Test-time augmentation: the softmax averaged over an image and some transformed views of it.

Only the transformations the run trained with are used (a digit model trained without flips is never
shown a flipped digit): a horizontal or vertical flip when the run's augmentation flipped, two shifted
views when it translated, and a centre zoom when it zoomed or cropped.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import torch
from torchvision.transforms.v2 import functional as F

from cnnlab.config import AugmentConfig
from cnnlab.data.augment_batches import resolved

View = Callable[[torch.Tensor], torch.Tensor]
SHIFT = 0.5  # of the run's translate range, each way
ZOOM = 1.1  # the centre zoom's scale (within a typical zoom range of 0.9-1.1)


def original(x: torch.Tensor) -> torch.Tensor:
    return x


def _affine(x: torch.Tensor, dx: float = 0.0, dy: float = 0.0, scale: float = 1.0) -> torch.Tensor:
    h, w = x.shape[-2:]
    return F.affine(x, angle=0.0, translate=[round(dx * w), round(dy * h)], scale=scale, shear=[0.0, 0.0])


def views(augment: AugmentConfig) -> list[tuple[str, View]]:
    """(name, transform) of every view, the original first."""
    ops = resolved(augment)
    out: list[tuple[str, View]] = [("original", original)]
    if ops.get("hflip"):
        out.append(("hflip", F.horizontal_flip))
    if ops.get("vflip"):
        out.append(("vflip", F.vertical_flip))
    if ops.get("translate"):
        d = ops["translate"] * SHIFT
        out += [("shift+", partial(_affine, dx=d, dy=d)), ("shift-", partial(_affine, dx=-d, dy=-d))]
    if ops.get("zoom") or ops.get("crop_scale"):
        out.append(("zoom", partial(_affine, scale=ZOOM)))
    return out
