"""On-the-fly augmentation of training batches with torchvision.transforms.v2.

A v2 call on a batch draws one set of random parameters for the whole batch, and a call per
image costs as much as the training step on small images. So the batch is cut into groups of
``augment.group`` images: each group draws its own parameters, at a small fraction of the
per-image cost. ``--group 1`` gives per-image parameters when speed does not matter.
Validation, test, prediction and export never see augmentation.
"""
from __future__ import annotations

from typing import Optional

import torch
from torchvision.transforms import v2

from cnnlab.catalog.augmentations import OPERATIONS, PRESETS
from cnnlab.config import AugmentConfig


def resolved(cfg: AugmentConfig) -> dict:
    """The preset's operations, with every operation the config sets explicitly on top."""
    ops = dict(PRESETS.get(cfg.preset or "none")())
    ops.update({k: getattr(cfg, k) for k in OPERATIONS.names() if getattr(cfg, k) is not None})
    return {k: v for k, v in ops.items() if v not in (0, 0.0, None)}


def describe(cfg: AugmentConfig) -> str:
    ops = resolved(cfg)
    return ", ".join(f"{k}={list(v) if isinstance(v, tuple) else v}" for k, v in ops.items()) or "none"


class GroupedTransform:
    """Apply a v2 transform to a uint8 batch (N, C, H, W), with fresh random parameters per group."""

    def __init__(self, transform: v2.Transform, group: int) -> None:
        self.transform, self.group = transform, group

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.transform(chunk) for chunk in batch.split(self.group)])

    def __repr__(self) -> str:
        return f"GroupedTransform(group={self.group}, {self.transform})"


def build_augmentation(cfg: AugmentConfig, channels: int, size: tuple[int, int]) -> Optional[GroupedTransform]:
    ops = resolved(cfg)
    if not ops:
        return None
    steps = [t for build in OPERATIONS.builders() if (t := build(ops, channels, size)) is not None]
    if set(ops) - {"hflip", "vflip"}:
        # Convert to float once, first (each v2 op on uint8 converts to float and back), and back to
        # uint8 once, last: the batch stays a quarter of the size on its way to the model, whose
        # Normalize makes it float on the model's device. Flips alone never leave uint8.
        steps.insert(0, v2.ToDtype(torch.float32, scale=True))
        steps.append(v2.ToDtype(torch.uint8, scale=True))
    return GroupedTransform(v2.Compose(steps), cfg.group)
