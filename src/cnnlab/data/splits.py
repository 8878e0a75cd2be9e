"""Stratified, seeded train/val/test splits, recorded so a run can be reproduced."""
from __future__ import annotations

import warnings
from collections import Counter
from typing import Sequence

import numpy as np
from sklearn.model_selection import train_test_split


def _split_off(indices: np.ndarray, labels: list, fraction: float, seed: int, stratify: bool):
    if fraction <= 0 or len(indices) == 0:
        return indices, np.array([], dtype=int)
    n_out = max(1, int(round(len(indices) * fraction)))
    sub = [labels[i] for i in indices]
    counts = Counter(sub)
    can_stratify = stratify and min(counts.values()) >= 2 and n_out >= len(counts) and len(indices) - n_out >= len(counts)
    if stratify and not can_stratify:
        warnings.warn("some classes have too few images for a stratified split; splitting at random", stacklevel=3)
    keep, out = train_test_split(
        indices, test_size=n_out, random_state=seed, stratify=sub if can_stratify else None
    )
    return np.sort(keep), np.sort(out)


def split_indices(
    labels: Sequence, val_split: float, test_split: float, seed: int, stratify: bool = True
) -> dict[str, list[int]]:
    """Split sample indices into train/val/test, stratified by label where every class allows it."""
    all_idx = np.arange(len(labels))
    rest, test = _split_off(all_idx, list(labels), test_split, seed, stratify)
    val_fraction = val_split / (1.0 - test_split) if test_split else val_split
    train, val = _split_off(rest, list(labels), val_fraction, seed + 1, stratify)
    return {"train": train.tolist(), "val": val.tolist(), "test": test.tolist()}
