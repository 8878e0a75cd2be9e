"""The LightningModule: loss, metrics, optimiser and schedule around an ImageModel.

Everything else (the loop, devices, precision, checkpoints, early stopping) is Lightning's.
"""
from __future__ import annotations

import lightning as L
import torch
import torchmetrics
from torch import nn

from cnnlab.config import OptimConfig
from cnnlab.models.preprocess import ImageModel
from cnnlab.registry import Registry

OPTIMIZERS: Registry = Registry("optimizer")
SCHEDULES: Registry = Registry("schedule")


@OPTIMIZERS.register("sgd")
def sgd(params, o: OptimConfig):
    return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov and o.momentum > 0,
                           weight_decay=o.weight_decay)


@OPTIMIZERS.register("adam")
def adam(params, o: OptimConfig):
    return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)


@OPTIMIZERS.register("adamw")
def adamw(params, o: OptimConfig):
    return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)


@OPTIMIZERS.register("rmsprop")
def rmsprop(params, o: OptimConfig):
    return torch.optim.RMSprop(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


@SCHEDULES.register("none")
def no_schedule(opt, o: OptimConfig, trainer: L.Trainer, monitor: str):
    return None


@SCHEDULES.register("step")
def step_schedule(opt, o: OptimConfig, trainer: L.Trainer, monitor: str):
    return {"scheduler": torch.optim.lr_scheduler.StepLR(opt, o.step_size, o.gamma), "interval": "epoch"}


@SCHEDULES.register("cosine")
def cosine_schedule(opt, o: OptimConfig, trainer: L.Trainer, monitor: str):
    return {"scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=trainer.max_epochs), "interval": "epoch"}


@SCHEDULES.register("plateau")
def plateau_schedule(opt, o: OptimConfig, trainer: L.Trainer, monitor: str):
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max" if monitor.endswith("acc") else "min",
                                                       factor=o.gamma, patience=2)
    return {"scheduler": sched, "interval": "epoch", "monitor": monitor}


@SCHEDULES.register("onecycle")
def onecycle_schedule(opt, o: OptimConfig, trainer: L.Trainer, monitor: str):
    max_lr = [g["lr"] for g in opt.param_groups]
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=int(trainer.estimated_stepping_batches))
    return {"scheduler": sched, "interval": "step"}


class ImageTask(L.LightningModule):
    """Classification (logits + cross-entropy) or regression (linear output + MSE)."""

    def __init__(self, model: ImageModel, task: str, num_outputs: int, optim: OptimConfig,
                 monitor: str = "val_loss", full_batch_size: int = 0) -> None:
        super().__init__()
        self.model, self.task, self.optim_cfg, self.monitor = model, task, optim, monitor
        # ``batch`` mode: the loss is rescaled so that accumulated chunks give the exact full-batch gradient.
        self.full_batch_size = full_batch_size
        if task == "classification":
            self.loss_fn: nn.Module = nn.CrossEntropyLoss()
            make = lambda: torchmetrics.classification.MulticlassAccuracy(num_outputs, average="micro")  # noqa: E731
            self.metrics = nn.ModuleDict({"train_acc": make(), "val_acc": make(), "test_acc": make()})
        else:
            self.loss_fn = nn.MSELoss()
            self.metrics = nn.ModuleDict({
                f"{stage}_{name}": metric() for stage in ("train", "val", "test") for name, metric in (
                    ("mae", torchmetrics.MeanAbsoluteError),
                    ("rmse", lambda: torchmetrics.MeanSquaredError(squared=False)),
                    ("r2", torchmetrics.R2Score),
                )
            })

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _shared_step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        out = self.model(x)
        loss = self.loss_fn(out, y)
        n = len(y)
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, batch_size=n, sync_dist=stage != "train",
                 prog_bar=stage == "val")
        preds = out.detach() if self.task == "regression" else out.detach().argmax(1)
        for name, metric in self.metrics.items():
            if name.startswith(stage):
                metric.update(preds, y)
                self.log(name, metric, on_step=False, on_epoch=True, batch_size=n, prog_bar=name.endswith("acc"))
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self._shared_step(batch, "train")
        self.log("loss", loss, on_step=True, on_epoch=False, prog_bar=True, logger=False, batch_size=len(batch[1]))
        if self.full_batch_size:
            # Lightning divides by the accumulation count K; scale so the sum over chunks is sum(loss_i) / N.
            k = self.trainer.accumulate_grad_batches
            loss = loss * len(batch[1]) * k / self.full_batch_size
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def param_groups(self) -> list[dict]:
        """One group by default; transfer learning overrides this with per-part learning rates."""
        return [{"params": [p for p in self.model.parameters() if p.requires_grad]}]

    def configure_optimizers(self):
        opt = OPTIMIZERS.get(self.optim_cfg.optimizer)(self.param_groups(), self.optim_cfg)
        sched = SCHEDULES.get(self.optim_cfg.schedule)(opt, self.optim_cfg, self.trainer, self.monitor)
        return opt if sched is None else {"optimizer": opt, "lr_scheduler": sched}
