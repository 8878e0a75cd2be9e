"""An exponential moving average (EMA) of the weights: the weights a run validates and saves.

From the fastest published small-data recipes (airbench for CIFAR-10 keeps an EMA of the weights; timm's
ModelEmaV3). Measured on mnist-5k in benchmarks/results/recipe-2026-12-04.md.
"""
from __future__ import annotations

import torch
from lightning.pytorch.callbacks import WeightAveraging


def ema_decay(decay: float, updates: int) -> float:
    """The decay of the ``updates``-th update after the first: warmed up as in TensorFlow's and timm's EMA,
    (1 + n) / (10 + n), so that a short run's average does not keep its first, untrained weights."""
    return min(decay, (1 + updates) / (10 + updates))


class WeightEMA(WeightAveraging):
    """Lightning's weight averaging (torch's AveragedModel) as an EMA of the weights and the BatchNorm
    statistics, updated after every optimiser step: validation runs on the average, every checkpoint
    (best.ckpt, last.ckpt, so model.safetensors) holds it, and the training weights travel beside it in the
    checkpoint, so --resume continues both."""

    def __init__(self, decay: float) -> None:
        self.decay = decay
        self._updates = 0  # before this one: the optimiser steps since the first (a copy), from the trainer
        super().__init__(multi_avg_fn=self._average)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self._updates = trainer.global_step - 1  # a host integer: reading n_averaged would wait for a GPU
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    @torch.no_grad()
    def _average(self, averaged: list[torch.Tensor], current: list[torch.Tensor], _count) -> None:
        if torch.is_floating_point(averaged[0]):  # one group per dtype: weights and statistics
            torch._foreach_lerp_(averaged, current, 1 - ema_decay(self.decay, self._updates))
        else:  # BatchNorm's step counts: the current ones
            torch._foreach_copy_(averaged, current)
