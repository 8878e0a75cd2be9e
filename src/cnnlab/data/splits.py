"""Stratified, seeded train/val/test splits, recorded so a run can be reproduced."""
from __future__ import annotations

from collections import Counter
from typing import Optional, Sequence

import numpy as np
from sklearn.model_selection import train_test_split


def split_off(indices: np.ndarray, labels: list, fraction: float, seed: int, stratify: bool):
    if fraction <= 0 or len(indices) == 0:
        return indices, np.array([], dtype=int)
    n_out = max(1, int(round(len(indices) * fraction)))
    counts = Counter(labels[i] for i in indices)
    # A class with one image here cannot be on both sides: it stays in training, where it is learned.
    alone = {str(c) for c, k in counts.items() if k < 2} if stratify else set()
    pool = np.array([i for i in indices if str(labels[i]) not in alone], dtype=int)
    n_out = min(n_out, len(pool) - 1)
    if n_out < 1:
        return indices, np.array([], dtype=int)
    sub = [labels[i] for i in pool]
    classes = len(set(sub))
    can_stratify = stratify and n_out >= classes and len(pool) - n_out >= classes  # else at random
    keep, out = train_test_split(pool, test_size=n_out, random_state=seed, stratify=sub if can_stratify else None)
    if stratify:
        keep, out = _keep_one_of_each(keep, out, labels)
    return np.sort(np.concatenate([keep, np.setdiff1d(indices, pool)]).astype(int)), np.sort(out)


def _keep_one_of_each(keep: np.ndarray, out: np.ndarray, labels: list) -> tuple[np.ndarray, np.ndarray]:
    """A random split can take every image of a class: give one back to training."""
    kept = {labels[i] for i in keep}
    back = {}
    for i in out:
        if labels[i] not in kept and labels[i] not in back:
            back[labels[i]] = i
    if not back:
        return keep, out
    given_back = set(back.values())
    return (np.concatenate([keep, list(given_back)]).astype(int),
            np.array([i for i in out if i not in given_back], dtype=int))


def split_indices(
    labels: Sequence, val_split: float, test_split: float, seed: int, stratify: bool = True
) -> dict[str, list[int]]:
    """Split sample indices into train/val/test, stratified by label where every class allows it."""
    all_idx = np.arange(len(labels))
    rest, test = split_off(all_idx, list(labels), test_split, seed, stratify)
    val_fraction = val_split / (1.0 - test_split) if test_split else val_split
    train, val = split_off(rest, list(labels), val_fraction, seed + 1, stratify)
    return {"train": train.tolist(), "val": val.tolist(), "test": test.tolist()}


def short_classes_note(labels: Sequence, parts: dict[str, list[int]], fractions: dict[str, float]) -> Optional[str]:
    """One line naming the classes too small to appear in every held-out split asked for (None: none)."""
    classes = {str(c) for c in labels}
    missing = {part: classes - {str(labels[i]) for i in parts[part]} for part, f in fractions.items() if f > 0}
    short = sorted(set().union(*missing.values())) if missing else []
    if not short:
        return None
    which = "; ".join(f"{c}: no {' or '.join(p for p in missing if c in missing[p])} image" for c in short[:5])
    return (f"{len(short)} of {len(classes)} classes have too few images for every held-out split ({which}"
            f"{'; ...' if len(short) > 5 else ''}): figures on those splits leave them out")
