"""Datasets that serve uint8 image tensors: decoded once into memory, or from disk per item.

Both implement ``__getitems__`` so a DataLoader fetches a whole batch with one indexing
operation instead of ``batch_size`` Python calls plus a collate.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from cnnlab.data.device_decode import decode_on_device
from cnnlab.data.images import decode
from cnnlab.errors import BadImage
from cnnlab.data.sources import Entry, Skipped

BatchTransform = Callable[[torch.Tensor], torch.Tensor]


@lru_cache(maxsize=1)
def decoder_pool() -> ThreadPoolExecutor:
    """One thread per core: the decoders release the GIL, and more threads only fight over the cores
    with torch's own."""
    return ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="cnnlab-decode")


if hasattr(os, "register_at_fork"):  # a forked loader worker has none of the parent's threads
    os.register_at_fork(after_in_child=decoder_pool.cache_clear)


class Batch(list):
    """A training batch's indices and the seed its augmentation draws from (set by the data module's
    batch sampler; pickled with the indices to loader workers)."""

    seed: Optional[int] = None


def augment(transform: Optional[BatchTransform], x: torch.Tensor, indices) -> torch.Tensor:
    """Apply ``transform`` with the batch's own seed when it has one, leaving the global generator alone."""
    if transform is None:
        return x
    seed = getattr(indices, "seed", None)
    if seed is None:
        return transform(x)
    with torch.random.fork_rng(devices=[]):
        # the CPU generator only: torch.manual_seed also queues a re-seed of every other device's generators
        # with a formatted stack trace each, ~1 ms a batch (benchmarks/overhead.py), and the CPU's is the
        # one the transforms draw from
        torch.default_generator.manual_seed(seed)
        return transform(x)


DEVICE_BATCH = 64  # files nvJPEG decodes in one call


def _on_device(entries: Sequence[Entry], chunk: range, channels: int, size: tuple[int, int], interpolation: str,
               device: Optional[torch.device]) -> list[Optional[torch.Tensor]]:
    """The chunk's images that ``device`` decodes; None for those the CPU decodes (all of them without one)."""
    if device is None:
        return [None] * len(chunk)
    return decode_on_device([entries[i].path for i in chunk], channels, size, interpolation, device,
                            decoder_pool().map)


def decode_entries(
    entries: Sequence[Entry], channels: int, size: tuple[int, int], keep: bool, interpolation: str = "bilinear",
    into: Optional[torch.Tensor] = None, device: Optional[torch.device] = None,
) -> tuple[Optional[torch.Tensor], list[int], list[Skipped]]:
    """Decode every entry once, on the decoder threads (JPEGs in batches on ``device`` when given), each
    straight into its row of the result: ``into`` (rows of skipped entries left as they are) or a new tensor.

    Returns the stacked uint8 images (if ``keep`` or ``into``), the indices of the usable entries and the
    skipped ones with their reasons.
    """
    images = into if into is not None else torch.empty(len(entries) if keep else 0, channels, *size,
                                                       dtype=torch.uint8)
    store = keep or into is not None

    def one(i: int, done: Optional[torch.Tensor] = None) -> Optional[str]:
        try:
            img = done if done is not None else decode(entries[i].path, channels, size, interpolation)
        except BadImage as exc:
            return exc.reason
        if store:
            images[i] = img
        return None

    errors: list[Optional[str]] = []
    step = DEVICE_BATCH if device is not None else max(1, len(entries))
    for start in range(0, len(entries), step):  # in chunks, so only one chunk's device results are held at once
        chunk = range(start, min(len(entries), start + step))
        done = _on_device(entries, chunk, channels, size, interpolation, device)
        errors += list(decoder_pool().map(one, chunk, done))
    ok = [i for i, err in enumerate(errors) if err is None]
    skipped = [Skipped(entries[i].path, err) for i, err in enumerate(errors) if err is not None]
    if keep and into is None and len(ok) < len(entries):
        images = images[torch.as_tensor(ok, dtype=torch.long)]
    return (images if store else None), ok, skipped


class BatchImages(Dataset):
    """A dataset of uint8 images and ``targets`` that serves whole batches (``__getitems__``)."""

    targets: torch.Tensor

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        x, y = self.__getitems__([index])
        return x[0], y[0]

    def __getitems__(self, indices: list[int]):
        raise NotImplementedError


class InMemoryImages(BatchImages):
    """Decoded uint8 images (N, C, H, W) and their targets, kept in memory."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, transform: Optional[BatchTransform] = None):
        assert len(images) == len(targets)
        self.images, self.targets, self.transform = images, targets, transform

    def __getitems__(self, indices: list[int]):
        idx = torch.as_tensor(indices)
        return augment(self.transform, self.images[idx], indices), self.targets[idx]


class FileImages(BatchImages):
    """Images decoded from disk on access, for datasets too large to keep in memory."""

    def __init__(self, paths: Sequence, targets: torch.Tensor, channels: int, size: tuple[int, int],
                 transform: Optional[BatchTransform] = None, interpolation: str = "bilinear",
                 device: Optional[torch.device] = None):
        self.paths, self.targets = list(paths), targets
        self.channels, self.size, self.transform = channels, size, transform
        self.interpolation, self.device = interpolation, device  # device: JPEGs decoded there, main process only

    def _decode(self, index: int) -> torch.Tensor:
        return decode(self.paths[index], self.channels, self.size, self.interpolation)

    def __getitems__(self, indices: list[int]):
        if get_worker_info() is None and self.device is not None:  # a forked loader worker cannot use CUDA
            done = decode_on_device([self.paths[i] for i in indices], self.channels, self.size, self.interpolation,
                                    self.device, decoder_pool().map)
            x = torch.stack([d if d is not None else self._decode(i) for i, d in zip(indices, done)])
        elif get_worker_info() is None and len(indices) > 1:  # the main process: every core decodes
            x = torch.stack(list(decoder_pool().map(self._decode, indices)))
        else:  # a loader worker: the workers are the parallelism
            x = torch.stack([self._decode(i) for i in indices])
        return augment(self.transform, x, indices), self.targets[torch.as_tensor(indices)]


def map_images(path, shape: tuple[int, ...]) -> torch.Tensor:
    """The file's uint8 images, mapped copy-on-write: pages are read on access and the file is never written.
    The caller has checked the file's size against ``shape``."""
    return torch.from_numpy(np.memmap(path, dtype=np.uint8, mode="c", shape=tuple(shape)))


class MappedImages(BatchImages):
    """Rows of a uint8 (N, C, H, W) file cache (``cnnlab.data.cache``), memory-mapped: an epoch reads slices,
    decoding nothing. Each process (a spawned loader worker too) maps the file itself; pickling carries the
    file's name, not its pixels."""

    def __init__(self, path, shape: tuple[int, ...], rows: torch.Tensor, targets: torch.Tensor,
                 transform: Optional[BatchTransform] = None):
        assert len(rows) == len(targets)
        self.path, self.shape, self.rows, self.targets, self.transform = path, tuple(shape), rows, targets, transform
        self._images: Optional[torch.Tensor] = None

    @property
    def images(self) -> torch.Tensor:
        if self._images is None:
            self._images = map_images(self.path, self.shape)
        return self._images

    def __getstate__(self):
        return {**self.__dict__, "_images": None}

    def __getitems__(self, indices: list[int]):
        idx = torch.as_tensor(indices)
        return augment(self.transform, self.images[self.rows[idx]], indices), self.targets[idx]


def batch_collate(batch):
    """``__getitems__`` already returns a batch; a DataLoader must not collate it again."""
    return batch
