"""``--ema DECAY``: an exponential moving average (EMA) of the weights, the weights a run validates and keeps.

Lightning's ``WeightAveraging`` does the work (torch's ``AveragedModel`` with
``get_ema_multi_avg_fn``, updated after every optimiser step): validation runs on the average, every
checkpoint's ``state_dict`` (so best.ckpt, model.safetensors, calibration, evaluate, predict and export)
is the average, and the training weights travel beside it in the checkpoint (``current_model_state``),
so ``--resume`` continues both. Measured on mnist-5k in benchmarks/results/recipe-2026-12-04.md.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from lightning.pytorch.callbacks import WeightAveraging
from torch.optim.swa_utils import get_ema_multi_avg_fn

from cnnlab.errors import ConfigError


class WeightEMA(WeightAveraging):
    """The EMA of the weights *and* of the BatchNorm statistics (``use_buffers=True``): the statistics then
    follow the averaged weights step by step, as timm's ModelEma and airbench keep them, where
    ``update_bn`` would cost one more pass over the (augmented) training set after every epoch.

    Under DDP every rank keeps its own average of identical weights; only rank 0 writes checkpoints, and
    validation takes rank 0's statistics (ImageTask.on_validation_epoch_start)."""

    def __init__(self, decay: float) -> None:
        super().__init__(use_buffers=True, multi_avg_fn=get_ema_multi_avg_fn(decay))
        self.decay = decay

    def setup(self, trainer, pl_module, stage: str) -> None:
        # The average lives on the training device: Lightning's default is the module's device at setup,
        # before the strategy has moved it there (a GPU run would copy its weights to the host every step).
        if self._device is None:
            self._device = trainer.strategy.root_device
        super().setup(trainer, pl_module, stage)


def check_same_average(started: Optional[float], now: Optional[float], out: Path) -> None:
    """--resume continues the average its checkpoint holds, at the decay it started with: without it Lightning
    would train on from the averaged weights; with a new one, the average would restart mid-run (None and 0:
    no average, as in the runs from before --ema)."""
    if (started or 0.0) == (now or 0.0):
        return
    raise ConfigError(f"{out} was trained with --ema {started or 0:g}, and --resume continues it as it started: "
                      f"leave out --ema, or train a new run from its weights: --weights {out}")
