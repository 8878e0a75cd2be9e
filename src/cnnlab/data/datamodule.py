"""The LightningDataModule that serves prepared datasets as batches of uint8 tensors."""
from __future__ import annotations

import copy
import math
from typing import Optional

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from cnnlab.config import Config
from cnnlab.data.augment_batches import build_augmentation
from cnnlab.data.batched_augment import SeededBatches, build_batched_augmentation
from cnnlab.data.datasets import Batch, batch_collate
from cnnlab.data.prepare import Prepared
from cnnlab.memory import tune_allocator


def loader_batch_size(cfg: Config) -> int:
    """``stochastic``: one sample per update; otherwise the configured batch (or memory chunk)."""
    return 1 if cfg.train.mode == "stochastic" else cfg.data.batch_size


def accumulation(cfg: Config, n_train: int, world: int = 1) -> int:
    """``batch`` mode: one update per pass over the training set, by accumulating every chunk (of each
    rank's share of it, with more than one process)."""
    return math.ceil(math.ceil(n_train / world) / cfg.data.batch_size) if cfg.train.mode == "batch" else 1


def class_counts(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.bincount(targets.reshape(-1).long(), minlength=num_classes)


def balanced_weights(targets: torch.Tensor) -> torch.Tensor:
    """Each image's probability in a balanced draw: every class equally likely, its images alike."""
    targets = targets.reshape(-1).long()
    counts = class_counts(targets, int(targets.max()) + 1).double()
    return (1.0 / counts)[targets]


def inverse_frequency(targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Class weights for the loss: n / (classes x count), so a balanced set gets 1 for every class
    (scikit-learn's compute_class_weight("balanced")); a class with no training image gets 0."""
    counts = class_counts(targets, num_classes).float()
    weights = torch.where(counts > 0, counts.sum() / (num_classes * counts.clamp(min=1)), torch.zeros_like(counts))
    return weights


class EpochBatches(Sampler):
    """Shuffled training batches that depend only on (seed, epoch, batch number), and on the rank.

    Each batch is a ``Batch`` of indices carrying the seed its augmentation draws from, so the order and
    the augmentation are the same whether the loader runs in the main process or in workers, persistent
    or not, and after a resume in the middle of a run. Lightning calls ``set_epoch`` (through
    ``.sampler``) before each epoch, as it does for a DistributedSampler.

    With ``world`` processes, ``batch_size`` is the global batch: each global batch (one permutation for
    every rank) is dealt out, rank r taking every world-th index from r, so every rank makes the same
    number of steps and DDP's averaged gradient is the global batch's. A last batch smaller than the
    world is filled from the start of the permutation. ``whole`` (full-batch gradient descent) instead
    splits each rank's share of the whole set into the same number of chunks and repeats no image: the
    gradient is then exactly the full batch's.
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1, whole: bool = False,
                 weights: Optional[torch.Tensor] = None) -> None:
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, 0
        # balanced sampling: each epoch draws n indices with these probabilities, with replacement
        self.weights = weights
        self.rank, self.world, self.whole = rank, world, whole
        self.sampler = self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if self.whole:
            return math.ceil(math.ceil(self.n / self.world) / self.batch_size)
        return math.ceil(self.n / self.batch_size)

    def _batch_seed(self, key: int, i: int) -> int:
        seed = (key * 1_000_003 + i) % (1 << 62)
        return seed if self.rank == 0 else (seed * 1_000_003 + self.rank) % (1 << 62)

    def __iter__(self):
        key = (self.seed * 1_000_003 + self.epoch) % (1 << 62)
        generator = torch.Generator().manual_seed(key)
        if self.weights is not None:
            order = torch.multinomial(self.weights, self.n, replacement=True, generator=generator).tolist()
        else:
            order = torch.randperm(self.n, generator=generator).tolist()
        if self.whole:
            share, k, size = order[self.rank::self.world], len(self), self.batch_size
            if len(share) > (k - 1) * size:  # k chunks of the batch size, the last one shorter
                chunks = [share[i * size:(i + 1) * size] for i in range(k)]
            else:  # a rank with one image fewer would run out a chunk early: k near-equal chunks
                chunks = [p.tolist() for p in torch.tensor(share).tensor_split(k)]
        else:
            chunks = []
            for i in range(len(self)):
                chunk = order[i * self.batch_size:(i + 1) * self.batch_size]
                if len(chunk) < self.world:
                    chunk += order[:self.world - len(chunk)]
                chunks.append(chunk[self.rank::self.world])
        for i, chunk in enumerate(chunks):
            batch = Batch(chunk)
            batch.seed = self._batch_seed(key, i)
            yield batch


class Shard(Sampler):
    """Evaluation indices of one rank: every world-th from the rank, in order, none repeated (all of them
    on every rank when there are fewer images than ranks; the sums the metrics are made of then scale
    alike, and the means stay exact)."""

    def __init__(self, n: int, rank: int, world: int) -> None:
        self.indices = list(range(rank, n, world)) if n >= world else list(range(n))

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self):
        return iter(self.indices)


class ImageDataModule(L.LightningDataModule):
    def __init__(self, prepared: Prepared, cfg: Config) -> None:
        super().__init__()
        tune_allocator()  # batches and activations reuse freed memory instead of faulting in new pages
        self.prepared, self.cfg = prepared, cfg
        self.batch_size = loader_batch_size(cfg)
        self.augment = build_augmentation(cfg.augment, prepared.pre.channels, prepared.pre.size)
        # on the device, one batched call with per-image parameters (a constant number of kernel launches)
        self.device_augment = build_batched_augmentation(cfg.augment, prepared.pre.channels, prepared.pre.size)

    def _loader(self, ds: Optional[Dataset], shuffle: bool) -> DataLoader:
        workers = self.cfg.data.num_workers
        # A generator of the loader's own for its workers' base seed, which would otherwise be drawn from the
        # global generator once per iterator: persistent workers draw it once per run, so a resumed run
        # would draw it again and shift every dropout mask after it.
        common = {"num_workers": workers, "persistent_workers": workers > 0, "collate_fn": batch_collate,
                  "generator": torch.Generator().manual_seed(self.cfg.seed)}
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)
        if shuffle:
            balanced = self.cfg.data.sampler == "balanced" and self.cfg.train.mode != "batch"
            batches = EpochBatches(len(ds), self.batch_size, self.cfg.seed, rank, world,
                                   whole=self.cfg.train.mode == "batch",
                                   weights=balanced_weights(ds.targets) if balanced else None)
            return DataLoader(ds, batch_sampler=batches, **common)
        sampler = Shard(len(ds), rank, world) if world > 1 else None
        return DataLoader(ds, batch_size=max(self.batch_size, 256), sampler=sampler, shuffle=False, **common)

    def augments_on_device(self) -> bool:
        """Augment after the copy to the model's device (``augment.where``; auto: when not the CPU)."""
        if self.augment is None or self.cfg.augment.where == "loader":
            return False
        if self.cfg.augment.where == "device":
            return True
        trainer = self.trainer
        return trainer is not None and trainer.strategy.root_device.type != "cpu"

    def train_dataloader(self) -> DataLoader:
        train = copy.copy(self.prepared.datasets["train"])
        # training batches only; val/test see the plain images
        train.transform = None if self.augments_on_device() else self.augment
        if self.augments_on_device():  # batches carry their parameters to the device
            train = SeededBatches(train, self.device_augment.parameters)
        loader = self._loader(train, shuffle=True)
        if self.trainer is not None:
            # Loader workers fetch their first batches as soon as the iterator exists, which on a resume is
            # before Lightning's set_epoch: start at the epoch that Lightning will set.
            loader.batch_sampler.set_epoch(self.trainer.fit_loop.epoch_progress.current.processed)
        return loader

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Batch-level augmentation on the device, for training batches only, drawn from the batch's seed."""
        if len(batch) == 3:  # a training batch of SeededBatches
            x, y, params = batch
            batch = (self.device_augment(x, params=params), y) if self.trainer is None or self.trainer.training \
                else (x, y)
        return batch

    def val_dataloader(self):
        ds = self.prepared.datasets.get("val")
        return self._loader(ds, shuffle=False) if ds is not None else []

    def test_dataloader(self):
        ds = self.prepared.datasets.get("test")
        return self._loader(ds, shuffle=False) if ds is not None else []
