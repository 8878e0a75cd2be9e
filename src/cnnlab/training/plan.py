"""One step from config + data + machine to one frozen, fully concrete plan (timm's train.py: resolve
every derived setting, then build).

``settle`` makes the choices that need only the config and the machine, before the data is read: the
weights kind (the weights path is looked at once), the source run's architecture, the model's defaults,
the recipe (rate, schedule, augmentation), the strategy, feature caching and the devices. ``make_plan``
adds what the data decides (epochs, the monitored metric, the outputs) and, for ``--lr auto``, the rate
Lightning's range test finds. After it, nothing resolves a setting again: a value like ``"auto"`` never
travels past the plan, and config.yaml is written from ``Plan.config``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

from cnnlab.config import Config
from cnnlab.data.augment_batches import resolved
from cnnlab.data.datamodule import loader_batch_size
from cnnlab.data.prepare import Prepared
from cnnlab.errors import CnnlabError
from cnnlab.models.registry import get_entry, resolve_model_config, weights_kind
from cnnlab.training import distributed
from cnnlab.training.callbacks import monitored
from cnnlab.training.lr_find import MIN_LR, RangeTest
from cnnlab.catalog.strategies import Strategy, resolve as resolve_strategy
from cnnlab.training.source_run import adopt_source_run
from cnnlab.catalog.names import Task

AUTO = "auto"
# Optimiser steps the default epoch count aims at (mnist-5k: 16 epochs of 57 steps), within EPOCH_RANGE.
# A value is a finer target than a class: regression gets more (scikit-learn's digits as values, 21
# steps an epoch: R² 0.938 after 30 epochs, 0.951-0.953 after 75; benchmarks/regression.py).
TARGET_STEPS = {Task.CLASSIFICATION: 900, Task.REGRESSION: 1600}
EPOCH_RANGE = {Task.CLASSIFICATION: (5, 30), Task.REGRESSION: (5, 80)}
# The EMA of the weights when --ema is not given: off (benchmarks/results/recipe-2026-12-04.md).
EMA_DECAY = 0.0
# Label smoothing when --label-smoothing is not given, for classification from scratch (mnist-5k: +0.21 points
# of test accuracy over 18 paired seeds, about 14% fewer errors; benchmarks/results/recipe-2026-12-04.md);
# pretrained backbones were not measured with it: 0.
LABEL_SMOOTHING = 0.1


@dataclass(frozen=True)
class Machine:
    """Where the run trains, as this machine answers ``auto``."""

    accelerator: str  # cpu or cuda
    devices: int  # processes per node
    num_nodes: int
    precision: str
    ddp: bool  # one process per device, gradients averaged

    @property
    def world_size(self) -> int:
        return self.devices * self.num_nodes


@dataclass(frozen=True)
class Settled:
    """The choices made before the data is read."""

    config: Config  # model, recipe and channels_last explicit; lr and epochs may still be auto / unset
    weights: str  # none, imagenet, file or run
    strategy: Strategy
    cached: bool  # the frozen backbone runs once; the head trains on its features
    machine: Machine


@dataclass(frozen=True)
class Plan:
    """Everything a run is built from, every value concrete."""

    config: Config  # as config.yaml records it: optim.lr and train.epochs are this plan's
    model: str
    weights: str
    strategy: Strategy
    cached: bool
    machine: Machine
    lr: float
    epochs: int
    monitor: str  # what 'best' and early stopping watch
    mode: str  # min or max
    num_outputs: int
    range_test: Optional[RangeTest] = None  # with --lr auto: how lr was found

    def __post_init__(self) -> None:
        c = self.config
        loose = [name for name, value in (("lr", c.optim.lr), ("epochs", c.train.epochs), ("schedule", c.optim.schedule),
                                          ("augment", c.augment.preset), ("channels_last", c.train.channels_last),
                                          ("ema", c.optim.ema), ("label_smoothing", c.optim.label_smoothing))
                 if value is None or value == AUTO]
        if loose or c.optim.lr != self.lr or c.train.epochs != self.epochs or self.model != c.model.name:
            raise AssertionError(f"a plan is concrete and agrees with its config: {loose or (self.lr, self.epochs)}")

    @property
    def head_epochs(self) -> int:
        return self.config.head_epochs()


# ----------------------------------------------------------------------------- before the data
def settle(cfg: Config) -> Settled:
    weights = weights_kind(cfg)  # the one look at the weights path
    cfg = resolve_model_config(adopt_source_run(cfg, weights))
    strategy = resolve_strategy(cfg.transfer.strategy, weights)
    cfg = resolve_devices(resolve_recipe(cfg, weights, strategy))
    cached = strategy.cacheable and cfg.transfer.cache_features and not resolved(cfg.augment)
    return Settled(cfg, weights, strategy, cached, machine(cfg))


def resolve_recipe(cfg: Config, weights: Optional[str] = None, strategy: Optional[Strategy] = None) -> Config:
    """The defaults that depend on the model, made explicit: the learning rate (0.003 from scratch, 0.001 for
    pretrained weights), the schedule (one-cycle's warm-up and annealing; the strategy's own where one-cycle
    cannot follow it), the augmentation (light from scratch; none for pretrained backbones, whose frozen
    features can then be computed once), label smoothing (LABEL_SMOOTHING for classification from scratch, else
    0) and the EMA of the weights (EMA_DECAY)."""
    weights = weights or weights_kind(cfg)
    scratch = weights == "none"
    strategy = strategy or resolve_strategy(cfg.transfer.strategy, weights)
    optim, augment = cfg.optim, cfg.augment
    if optim.lr is None:
        optim = optim.model_copy(update={"lr": 0.003 if scratch else 0.001})
    if optim.schedule is None:
        optim = optim.model_copy(update={"schedule": strategy.default_schedule})
    if augment.preset is None:
        augment = augment.model_copy(update={"preset": "light" if scratch else "none"})
    if optim.label_smoothing is None:
        smoothing = LABEL_SMOOTHING if scratch and cfg.task == Task.CLASSIFICATION else 0.0
        optim = optim.model_copy(update={"label_smoothing": smoothing})
    if optim.ema is None:
        optim = optim.model_copy(update={"ema": EMA_DECAY})
    return cfg.model_copy(update={"optim": optim, "augment": augment})


def resolve_devices(cfg: Config) -> Config:
    """The device choices made explicit for this machine (written into the run as made). channels_last
    defaults to on only where benchmarks/cpu_speed.py measured it faster end to end: the custom CNNs on
    the CPU (cnn-small on mnist-5k: 1.1-1.2x); not resnet18 on the CPU (1.0x), not measured on GPUs."""
    if cfg.train.channels_last is not None:
        return cfg
    on = distributed.accelerator(cfg) == "cpu" and not get_entry(cfg.model.name).pretrained
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"channels_last": on})})


def machine(cfg: Config) -> Machine:
    world = distributed.world_size(cfg)
    return Machine(distributed.accelerator(cfg), world // cfg.train.num_nodes, cfg.train.num_nodes,
                   cfg.train.precision, cfg.train.distributed == "ddp" or world > 1)


# ----------------------------------------------------------------------------- with the data
def resolve_epochs(cfg: Config, n_train: int) -> Config:
    """Epochs unset: about TARGET_STEPS optimiser steps, within EPOCH_RANGE (one step an epoch in batch mode)."""
    if cfg.train.epochs is not None:
        return cfg
    steps = 1 if cfg.train.mode == "batch" else max(1, math.ceil(n_train / loader_batch_size(cfg)))
    low, high = EPOCH_RANGE[cfg.task]
    epochs = min(high, max(low, round(TARGET_STEPS[cfg.task] / steps)))
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": epochs})})


def num_outputs(cfg: Config, prepared: Prepared) -> int:
    return len(prepared.classes) if cfg.task == Task.CLASSIFICATION else 1


def make_plan(settled: Settled, prepared: Prepared,
              find_lr: Optional[Callable[[Plan], RangeTest]] = None) -> Plan:
    """The plan; with ``--lr auto`` the range test runs on a probe plan that starts at the test's lowest rate
    (``find_lr``), and the plan takes the rate it finds."""
    cfg = resolve_epochs(settled.config, prepared.size("train"))
    monitor, mode = monitored(cfg, prepared.size("val") > 0)
    outputs = num_outputs(cfg, prepared)

    def plan(lr: float, found: Optional[RangeTest] = None) -> Plan:
        config = cfg.model_copy(update={"optim": cfg.optim.model_copy(update={"lr": lr})})
        return Plan(config, config.model.name, settled.weights, settled.strategy, settled.cached, settled.machine,
                    lr, config.train.epochs, monitor, mode, outputs, found)

    if cfg.optim.lr != AUTO:
        return plan(float(cfg.optim.lr))
    if find_lr is None:
        raise CnnlabError("--lr auto needs the range test: train with cnnlab train, or give --lr")
    found = find_lr(plan(MIN_LR))
    return plan(found.lr, found)
