"""The LightningDataModule that serves prepared datasets as batches of uint8 tensors."""
from __future__ import annotations

import copy
import math
from typing import Optional

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from cnnlab.config import Config
from cnnlab.data.augment import build_augmentation
from cnnlab.data.datasets import Batch, batch_collate
from cnnlab.data.prepare import Prepared
from cnnlab.memory import tune_allocator


def loader_batch_size(cfg: Config) -> int:
    """``stochastic``: one sample per update; otherwise the configured batch (or memory chunk)."""
    return 1 if cfg.train.mode == "stochastic" else cfg.data.batch_size


def accumulation(cfg: Config, n_train: int) -> int:
    """``batch`` mode: one update per pass over the training set, by accumulating every chunk."""
    return math.ceil(n_train / cfg.data.batch_size) if cfg.train.mode == "batch" else 1


class EpochBatches(Sampler):
    """Shuffled training batches that depend only on (seed, epoch, batch number).

    Each batch is a ``Batch`` of indices carrying the seed its augmentation draws from, so the order and
    the augmentation are the same whether the loader runs in the main process or in workers, persistent
    or not, and after a resume in the middle of a run. Lightning calls ``set_epoch`` (through
    ``.sampler``) before each epoch, as it does for a DistributedSampler.
    """

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, 0
        self.sampler = self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __iter__(self):
        key = (self.seed * 1_000_003 + self.epoch) % (1 << 62)
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(key)).tolist()
        for i in range(len(self)):
            batch = Batch(order[i * self.batch_size:(i + 1) * self.batch_size])
            batch.seed = (key * 1_000_003 + i) % (1 << 62)
            yield batch


class ImageDataModule(L.LightningDataModule):
    def __init__(self, prepared: Prepared, cfg: Config) -> None:
        super().__init__()
        tune_allocator()  # batches and activations reuse freed memory instead of faulting in new pages
        self.prepared, self.cfg = prepared, cfg
        self.batch_size = loader_batch_size(cfg)
        self.augment = build_augmentation(cfg.augment, prepared.pre.channels, prepared.pre.size)

    def _loader(self, ds: Optional[Dataset], shuffle: bool) -> DataLoader:
        workers = self.cfg.data.num_workers
        # A generator of the loader's own for its workers' base seed, which would otherwise be drawn from the
        # global generator once per iterator: persistent workers draw it once per run, so a resumed run
        # would draw it again and shift every dropout mask after it.
        common = {"num_workers": workers, "persistent_workers": workers > 0, "collate_fn": batch_collate,
                  "generator": torch.Generator().manual_seed(self.cfg.seed)}
        if shuffle:
            return DataLoader(ds, batch_sampler=EpochBatches(len(ds), self.batch_size, self.cfg.seed), **common)
        return DataLoader(ds, batch_size=max(self.batch_size, 256), shuffle=False, **common)

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
        loader = self._loader(train, shuffle=True)
        if self.trainer is not None:
            # Loader workers fetch their first batches as soon as the iterator exists, which on a resume is
            # before Lightning's set_epoch: start at the epoch that Lightning will set.
            loader.batch_sampler.set_epoch(self.trainer.fit_loop.epoch_progress.current.processed)
        return loader

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Batch-level augmentation on the device, for training batches only."""
        if self.trainer is not None and self.trainer.training and self.augments_on_device():
            x, y = batch
            batch = (self.augment(x), y)
        return batch

    def val_dataloader(self):
        ds = self.prepared.datasets.get("val")
        return self._loader(ds, shuffle=False) if ds is not None else []

    def test_dataloader(self):
        ds = self.prepared.datasets.get("test")
        return self._loader(ds, shuffle=False) if ds is not None else []
