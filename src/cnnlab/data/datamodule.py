"""The LightningDataModule that serves prepared datasets as batches of uint8 tensors."""
from __future__ import annotations

import copy
import math
from typing import Optional

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from cnnlab.config import Config
from cnnlab.data.augment import build_augmentation
from cnnlab.data.datasets import batch_collate
from cnnlab.data.prepare import Prepared
from cnnlab.memory import tune_allocator


def loader_batch_size(cfg: Config) -> int:
    """``stochastic``: one sample per update; otherwise the configured batch (or memory chunk)."""
    return 1 if cfg.train.mode == "stochastic" else cfg.data.batch_size


def accumulation(cfg: Config, n_train: int) -> int:
    """``batch`` mode: one update per pass over the training set, by accumulating every chunk."""
    return math.ceil(n_train / cfg.data.batch_size) if cfg.train.mode == "batch" else 1


class ImageDataModule(L.LightningDataModule):
    def __init__(self, prepared: Prepared, cfg: Config) -> None:
        super().__init__()
        tune_allocator()  # batches and activations reuse freed memory instead of faulting in new pages
        self.prepared, self.cfg = prepared, cfg
        self.batch_size = loader_batch_size(cfg)
        self.augment = build_augmentation(cfg.augment, prepared.pre.channels, prepared.pre.size)

    def _loader(self, ds: Optional[Dataset], shuffle: bool) -> DataLoader:
        workers = self.cfg.data.num_workers
        return DataLoader(
            ds, batch_size=self.batch_size if shuffle else max(self.batch_size, 256), shuffle=shuffle,
            num_workers=workers, persistent_workers=workers > 0, collate_fn=batch_collate,
            generator=torch.Generator().manual_seed(self.cfg.seed) if shuffle else None,
        )

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
        return self._loader(train, shuffle=True)

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
