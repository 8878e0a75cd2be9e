"""What a plan builds: the task, the callbacks and the trainer. Each reads the plan and resolves nothing."""
from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor

from cnnlab.data.datamodule import accumulation, inverse_frequency
from cnnlab.data.prepare import Prepared
from cnnlab.training import distributed, transfer
from cnnlab.training.callbacks import GradientFlow, bar_on_terminal, standard_callbacks
from cnnlab.training.checkpoint import AtomicCheckpointIO
from cnnlab.training.ema import WeightEMA
from cnnlab.training.module import ImageTask
from cnnlab.training.plan import Plan

log = logging.getLogger(__name__)
TRACKER_GRADIENT_EVERY = 50  # gradient-norm steps with a tracker (TensorBoard ...) when --gradient-every is 0


def task(plan: Plan, model, prepared: Prepared, probe: bool = False) -> ImageTask:
    """The LightningModule of ``plan``. ``probe``: the LR finder's (no finiteness watch: the range test drives
    the loss up on purpose; not compiled: it runs a hundred steps)."""
    cfg = plan.config
    targets = prepared.datasets["train"].targets
    class_weights = inverse_frequency(targets, plan.num_outputs) if cfg.optim.class_weights == "auto" else None
    return ImageTask(
        transfer.CachedHead(model.net.head) if plan.cached else model, cfg.task, plan.num_outputs, cfg.optim,
        monitor=plan.monitor, full_batch_size=prepared.size("train") if cfg.train.mode == "batch" else 0,
        backbone_lr_mult=plan.strategy.backbone_ratio(cfg.transfer.backbone_lr_mult),
        check_gradients=plan.machine.precision not in ("16-mixed", "16"), channels_last=cfg.train.channels_last,
        compile=cfg.train.compile and not probe, config=cfg.model_dump(mode="json"), class_weights=class_weights,
        target_std=prepared.pre.target_std, lr=plan.lr, watch_finite=not probe)


def callbacks(plan: Plan, out: Path, has_val: bool, extra: Sequence[Callback], tracker) -> list[Callback]:
    cfg = plan.config
    cbs = standard_callbacks(cfg, out, has_val) + [distributed.ProcessWatch()] + list(extra)
    if tracker is not None:  # the curves, the learning rate and (every 50 steps unless set) the gradient norms
        cbs.append(LearningRateMonitor(logging_interval="epoch"))
    gradient_every = cfg.train.gradient_every or (TRACKER_GRADIENT_EVERY if tracker is not None else 0)
    if gradient_every and not plan.cached:
        cbs.append(GradientFlow(out, gradient_every))
    if cfg.optim.ema:  # validated and saved: the averaged weights
        cbs.append(WeightEMA(cfg.optim.ema))
    schedule = None if plan.cached else transfer.schedule_callback(cfg, plan.strategy, plan.head_epochs)
    if schedule is not None:
        cbs.append(schedule)
    return cbs


def trainer_options(plan: Plan, n_train: int) -> dict:
    """The Trainer's settings that the run and the LR finder's probe share."""
    cfg, machine = plan.config, plan.machine
    if machine.ddp:
        from lightning.pytorch.strategies import DDPStrategy

        strategy = DDPStrategy()
    else:
        strategy = "auto"
    return dict(
        max_epochs=plan.epochs, accelerator=machine.accelerator, devices=machine.devices, strategy=strategy,
        num_nodes=machine.num_nodes, precision=machine.precision,
        use_distributed_sampler=False,  # the data module deals out every rank's share itself (same steps on each)
        accumulate_grad_batches=accumulation(cfg, n_train, machine.world_size), enable_model_summary=False,
        num_sanity_val_steps=0, deterministic=cfg.train.deterministic or None,
        benchmark=False if cfg.train.deterministic else None)


def trainer(plan: Plan, out: Path, cbs: list[Callback], tracker, n_train: int) -> L.Trainer:
    cfg = plan.config
    if cfg.train.deterministic:  # Lightning sets deterministic algorithms and the cuBLAS workspace; cuDNN too
        torch.backends.cudnn.deterministic = True
    if cfg.train.compile:
        log.info("compiling the model with torch.compile: the first steps (and the first validation) take "
                 "longer while it compiles")
    return L.Trainer(
        **trainer_options(plan, n_train), max_time=timedelta(seconds=cfg.train.max_time) if cfg.train.max_time else None,
        callbacks=cbs, logger=tracker or False, enable_progress_bar=cfg.train.progress and bar_on_terminal(),
        default_root_dir=out, log_every_n_steps=10, plugins=[AtomicCheckpointIO()])
