"""From a dataset on disk to train/val/test datasets of uint8 tensors at the model's input size.

Every file is decoded once: what fails is skipped and reported; what succeeds is kept in memory
when it fits, else in the image cache on disk (``data.cache``; ``cnnlab.data.cache``), so loading
never dominates an epoch. ``cache none`` decodes the files again every epoch.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from cnnlab.config import Config
from cnnlab.catalog.names import Accelerator
from cnnlab.data.cache import Cached, Key, cached_images
from cnnlab.data.datasets import FileImages, InMemoryImages, MappedImages, decode_entries
from cnnlab.data.device_decode import decode_device
from cnnlab.data.memo import remembered
from cnnlab.data.images import probe
from cnnlab.data.sources import Entry, Scan, Skipped, scan
from cnnlab.data.splits import short_classes_note, split_indices, split_off
from cnnlab.errors import DataError
from cnnlab.preprocessing import Preprocessing
from cnnlab.catalog.names import Task

PROBE_COUNT = 200
UNUSED = "unused"  # a training image left out by data.train_images


@dataclass
class Prepared:
    task: str
    classes: list[str]
    pre: Preprocessing
    datasets: dict[str, Dataset]
    records: list[tuple[str, str, str]]  # (path, label, split) of every image used
    skipped: list[Skipped] = field(default_factory=list)
    in_memory: bool = True
    cache_file: Optional[str] = None  # the image cache's file the datasets map (data.cache disk)
    notes: list[str] = field(default_factory=list)  # layout and split warnings, one line each

    def size(self, split: str) -> int:
        ds = self.datasets.get(split)
        return len(ds) if ds is not None else 0


def probe_dataset(entries: list[Entry]) -> Optional[tuple[tuple[int, int], int]]:
    """The most common (H, W) and the channel count (1 only if every probed image is grayscale)."""
    step = max(1, len(entries) // PROBE_COUNT)
    found = [p for p in (probe(e.path) for e in entries[::step]) if p is not None]
    if not found:
        return None
    size = Counter(s for s, _ in found).most_common(1)[0][0]
    channels = 1 if all(c == 1 for _, c in found) else 3
    return size, channels


def _targets(entries: list[Entry], classes: list[str], task: str) -> torch.Tensor:
    if task == Task.REGRESSION:
        return torch.tensor([[float(e.label)] for e in entries], dtype=torch.float32)
    index = {c: i for i, c in enumerate(classes)}
    return torch.tensor([index[str(e.label)] for e in entries], dtype=torch.long)


def _assign_splits(entries: list[Entry], cfg: Config, task: str, notes: list[str]) -> list[str]:
    """Each entry's split: as given, else stratified and seeded (a note for the classes too small for it)."""
    stratify = task == Task.CLASSIFICATION
    if any(e.split is not None for e in entries):
        given = [e.split or "train" for e in entries]
        if "val" in given or cfg.data.val_split == 0:
            return given
        # train/ and test/ given, no val/: take the validation set from train, as configured.
        train_idx = [i for i, s in enumerate(given) if s == "train"]
        labels = [entries[i].label for i in train_idx]
        parts = split_indices(labels, cfg.data.val_split, 0.0, cfg.seed, stratify=stratify)
        _note_short_classes(notes, stratify, labels, parts, {"val": cfg.data.val_split})
        for j in parts["val"]:
            given[train_idx[j]] = "val"
        return given
    labels = [e.label for e in entries]
    parts = split_indices(labels, cfg.data.val_split, cfg.data.test_split, cfg.seed, stratify=stratify)
    fractions = {"test": cfg.data.test_split, "val": cfg.data.val_split}
    _note_short_classes(notes, stratify, labels, parts, fractions)
    out = [""] * len(entries)
    for name, idx in parts.items():
        for i in idx:
            out[i] = name
    return out


def _limit_training(splits: list[str], entries: list[Entry], cfg: Config, notes: list[str]) -> None:
    """``data.train_images``: all but that many training images set aside (``UNUSED``: in no dataset and not
    in split.csv), stratified and seeded like the splits, every class keeping at least one image."""
    train = [i for i, s in enumerate(splits) if s == "train"]
    wanted = cfg.data.train_images
    if wanted >= len(train):
        notes.append(f"--train-images {wanted}: there are {len(train)} training images; all of them are used")
        return
    labels = [entries[i].label for i in train]
    keep, _ = split_off(np.arange(len(train)), labels, 1 - wanted / len(train), cfg.seed + 2,
                        cfg.task == Task.CLASSIFICATION)
    kept = set(keep.tolist())
    for j, i in enumerate(train):
        if j not in kept:
            splits[i] = UNUSED
    if len(kept) > wanted:  # every class keeps one image, even where the share would leave it none
        notes.append(f"--train-images {wanted}: {len(kept)} training images kept, so that every class has one")


def _note_short_classes(notes: list[str], stratify: bool, labels: list, parts: dict, fractions: dict) -> None:
    note = short_classes_note(labels, parts, fractions) if stratify else None
    if note:
        notes.append(note)


def decode_scan(scan_: Scan, pre: Preprocessing, keep: bool,
                device: Optional[torch.device] = None) -> tuple[list[Entry], Optional[torch.Tensor], list[Skipped]]:
    images, ok, bad = decode_entries(scan_.entries, pre.channels, pre.size, keep=keep, interpolation=pre.interpolation,
                                     device=device)
    return [scan_.entries[i] for i in ok], images, scan_.skipped + bad


def fits_in_memory(n: int, pre: Preprocessing, limit_mb: int) -> bool:
    return n * pre.channels * pre.size[0] * pre.size[1] <= limit_mb * 2**20


def cache_mode(cfg: Config, n: int, pre: Preprocessing) -> str:
    """memory, disk or none: ``auto`` is memory when the decoded images fit under cache_limit_mb, else disk."""
    if cfg.data.cache != "auto":
        return cfg.data.cache
    return "memory" if fits_in_memory(n, pre, cfg.data.cache_limit_mb) else "disk"


def _decoder(cfg: Config) -> Optional[torch.device]:
    t = cfg.train.accelerator
    on_gpu = t in (Accelerator.GPU, Accelerator.CUDA) or (t == Accelerator.AUTO and torch.cuda.is_available())
    return decode_device(cfg.data.decode, on_gpu)


def _decoded(found: Scan, pre: Preprocessing, cfg: Config):
    """The usable entries, their images (in memory, or the cache's rows and which row each entry is) and the
    skipped files, decoded once."""
    mode, device = cache_mode(cfg, len(found.entries), pre), _decoder(cfg)
    key = Key(pre.channels, tuple(pre.size), pre.interpolation, "cpu" if device is None else "cuda")
    cached: Optional[Cached] = cached_images(found.entries, key, device) if mode == "disk" else None
    if cached is not None:
        return [found.entries[i] for i in cached.ok], None, cached, found.skipped + cached.skipped, device
    if mode != "memory":
        entries, images, skipped = decode_scan(found, pre, False, device)
        return entries, images, None, skipped, device
    images, ok, bad = remembered(found.entries, key, lambda: decode_entries(
        found.entries, pre.channels, pre.size, keep=True, interpolation=pre.interpolation, device=device))
    return [found.entries[i] for i in ok], images, None, found.skipped + bad, device


def _datasets(splits: list[str], entries: list[Entry], targets: torch.Tensor, images: Optional[torch.Tensor],
              cached: Optional[Cached], pre: Preprocessing, device) -> dict[str, Dataset]:
    datasets: dict[str, Dataset] = {}
    rows = torch.as_tensor(cached.ok, dtype=torch.long) if cached is not None else None
    for name in ("train", "val", "test"):
        idx = [i for i, s in enumerate(splits) if s == name]
        if not idx:
            continue
        t = torch.as_tensor(idx)
        if cached is not None:
            datasets[name] = MappedImages(cached.path, tuple(cached.images.shape), rows[t], targets[t])
        elif images is not None:
            datasets[name] = InMemoryImages(images[t], targets[t])
        else:
            datasets[name] = FileImages([entries[i].path for i in idx], targets[t], pre.channels, pre.size,
                                        interpolation=pre.interpolation, device=device)
    return datasets


def prepare(cfg: Config, resolve_pre) -> Prepared:
    """Scan, decode once (skipping bad files), split. ``resolve_pre(probed)`` gives the preprocessing."""
    if not cfg.data.path:
        raise DataError("no dataset given: pass DATA (a folder of class sub-folders or a CSV manifest)")
    found = scan(cfg.data.path, cfg.task, cfg.data.target_column)
    pre: Preprocessing = resolve_pre(probe_dataset(found.entries))
    entries, images, cached, skipped, device = _decoded(found, pre, cfg)
    if found.classes:
        empty = sorted(set(found.classes) - {str(e.label) for e in entries})
        if empty:
            raise DataError(f"class '{empty[0]}' has no usable image (all its files were skipped, see above)")
    notes = list(found.notes)
    splits = _assign_splits(entries, cfg, cfg.task, notes)
    if cfg.data.train_images is not None:
        _limit_training(splits, entries, cfg, notes)
    targets = _targets(entries, found.classes, cfg.task)
    datasets = _datasets(splits, entries, targets, images, cached, pre, device)
    if "train" not in datasets:
        raise DataError(f"{found.root} has no training images (the split left none): lower --val-split/--test-split")
    records = [(str(e.path), str(e.label), s) for e, s in zip(entries, splits) if s != UNUSED]
    return Prepared(cfg.task, found.classes, pre, datasets, records, skipped, in_memory=images is not None,
                    notes=notes, cache_file=str(cached.path) if cached is not None else None)
