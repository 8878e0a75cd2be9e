"""A grid of a few images, each followed by augmented versions: what the model sees in training."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torchvision.utils import make_grid, save_image

from cnnlab.config import Config
from cnnlab.data.augment_batches import build_augmentation
from cnnlab.data.datasets import decode_entries
from cnnlab.data.prepare import probe_dataset
from cnnlab.data.sources import scan
from cnnlab.errors import DataError
from cnnlab.preprocessing import Preprocessing

MIN_TILE = 96  # small images (8x8 digits) are enlarged so a person can see the changes


def preview_rows(cfg: Config, data: str | Path, resolve: Callable[..., Preprocessing], images: int = 4,
                 versions: int = 6) -> list[torch.Tensor]:
    """One uint8 row (versions + 1, C, H, W) per image: the image, then its augmented versions.

    ``resolve(probed)`` gives the model's preprocessing for what the data looks like (the caller knows the
    models: ``lambda probed: resolve_preprocessing(cfg, probed)``)."""
    found = scan(data, cfg.task, cfg.data.target_column)
    pre = resolve(probe_dataset(found.entries))
    # One image per class first, so the grid shows the variety of the dataset.
    picks, seen = [], set()
    for e in found.entries:
        if str(e.label) not in seen:
            picks.append(e)
            seen.add(str(e.label))
    picks = (picks + [e for e in found.entries if e not in picks])[:images]
    batch, ok, _ = decode_entries(picks, pre.channels, pre.size, keep=True, interpolation=pre.interpolation)
    if not ok:
        raise DataError(f"no readable images in {data} to preview")
    augment = build_augmentation(cfg.augment.model_copy(update={"group": 1}), pre.channels, pre.size)
    rows = []
    for img in batch:
        copies = img.unsqueeze(0).repeat(versions, 1, 1, 1)
        augmented = augment(copies) if augment is not None else copies
        rows.append(torch.cat([img.unsqueeze(0), augmented]))
    return rows


def preview(cfg: Config, data: str | Path, out: str | Path, resolve: Callable[..., Preprocessing], images: int = 4,
            versions: int = 6) -> Path:
    """The rows of ``preview_rows`` as one PNG grid (small images enlarged)."""
    rows = preview_rows(cfg, data, resolve, images, versions)
    pre_size = rows[0].shape[-2:]
    grid = torch.cat(rows).float() / 255  # augmentation keeps uint8
    if min(pre_size) < MIN_TILE:
        factor = -(-MIN_TILE // min(pre_size))
        grid = F.interpolate(grid, scale_factor=factor, mode="nearest")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(grid, nrow=versions + 1, padding=4, pad_value=1.0), out)
    return out
