"""Callbacks: per-epoch metrics into the run directory, and the standard Lightning ones, configured."""
from __future__ import annotations

import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import Optional

import lightning as L
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint, TQDMProgressBar
import torch
from torch import nn

from cnnlab.catalog.names import Metric
from cnnlab.config import Config
from cnnlab.rundir import BEST, CHECKPOINTS, GRADIENTS, LAST, METRICS, read_csv, write_csv
from cnnlab.training.checkpoint import RandomState
from cnnlab.training.module import PROGRESS_EVERY

log = logging.getLogger(__name__)
METRIC_ORDER = tuple(m.value for m in Metric)  # metrics.csv's columns and the epoch line, in the catalogue's order


class EpochMetricsCSV(Callback):
    """One row per epoch: losses and metrics, learning rate(s), epoch time. Survives --resume.

    The rows and the training seconds so far travel in every checkpoint, so a resumed run rewrites
    metrics.csv as of its checkpoint (a kill between the checkpoint and the CSV loses no row) and its
    training time adds up across sessions.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / METRICS
        self.rows: list[dict] = []
        self._start = 0.0
        self.previous_seconds = 0.0  # training time of earlier sessions of this run (from the checkpoint)
        self._session_start = time.perf_counter()
        self._restored: list[dict] | None = None

    def elapsed(self) -> float:
        return self.previous_seconds + time.perf_counter() - self._session_start

    def state_dict(self) -> dict:
        return {"rows": [dict(r) for r in self.rows], "seconds": self.elapsed()}

    def load_state_dict(self, state_dict: dict) -> None:
        self._restored = [dict(r) for r in state_dict.get("rows", [])]
        self.previous_seconds = float(state_dict.get("seconds", 0.0))
        self._session_start = time.perf_counter()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After the checkpoint is restored: keep the rows of the epochs that the checkpoint has completed.
        rows = self._restored if self._restored is not None else read_csv(self.path)
        self.rows = [r for r in rows if int(r["epoch"]) < trainer.current_epoch]

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()
        self._lrs: dict = {}

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if batch_idx == 0:  # the rates this epoch trains with (schedulers step after on_train_epoch_end)
            self._lrs = {
                "lr" if (i, j) == (0, 0) else f"lr_{i}_{j}": f"{group['lr']:.6g}"
                for i, opt in enumerate(trainer.optimizers) for j, group in enumerate(opt.param_groups)
            }

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or not getattr(pl_module, "epoch_complete", True):
            return  # an epoch cut short (by a budget) has no figures of its own: no row
        logged = trainer.callback_metrics
        row = {"epoch": trainer.current_epoch}
        row.update({k: f"{float(logged[k]):.6g}" for k in METRIC_ORDER if k in logged})
        row.update(self._lrs)
        row["seconds"] = f"{time.perf_counter() - self._start:.3f}"
        self.rows.append(row)
        header = list(dict.fromkeys(k for r in self.rows for k in r))
        write_csv(self.path, header, ([r.get(k, "") for k in header] for r in self.rows))


# ----------------------------------------------------------------------------- gradient flow
VANISHING_RATIO = 1e-3  # first layers' gradient norm below this fraction of the last layers': warn


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The weight tensor of every convolution and dense layer, input side first."""
    return [(name.removesuffix(".weight"), p) for name, p in model.named_parameters()
            if name.endswith(".weight") and p.dim() > 1]


def gradient_norms(model: nn.Module) -> dict[str, float]:
    """Each layer's gradient norm, read back in one copy (one float() a layer would wait for a GPU's queue
    to drain once a layer)."""
    layers = [(name, p.grad) for name, p in weight_layers(model) if p.grad is not None]
    if not layers:
        return {}
    norms = torch.stack(torch._foreach_norm([g.detach() for _, g in layers])).tolist()
    return dict(zip((name for name, _ in layers), norms))


def first_last_ratio(norms: dict[str, float], k: int = 2) -> Optional[float]:
    values = list(norms.values())
    if len(values) < 2 * k:
        return None
    last = sum(values[-k:]) / k
    return (sum(values[:k]) / k) / last if last > 0 else None


class GradientFlow(Callback):
    """Every ``every`` steps: the gradient norm of each layer into RUN/gradients.csv; warns once about
    vanishing gradients."""

    def __init__(self, run_dir: Path, every: int) -> None:
        self.path, self.every, self.rows, self.warned = Path(run_dir) / GRADIENTS, every, [], False

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.global_step % self.every:
            return
        norms = gradient_norms(pl_module.model)
        self.rows.append({"step": trainer.global_step, "epoch": trainer.current_epoch, **norms})
        if trainer.loggers:  # TensorBoard, MLflow ...: one curve per layer
            for logger in trainer.loggers:
                logger.log_metrics({f"gradient_norm/{k}": float(v) for k, v in norms.items()}, trainer.global_step)
        ratio = first_last_ratio(norms)
        if not self.warned and ratio is not None and ratio < VANISHING_RATIO:
            self.warned = True
            log.warning(f"the first layers' gradient norm is {ratio:.1e} of the last layers' (step "
                        f"{trainer.global_step}): likely vanishing gradients. Try relu, batch norm or --residual true")

    def state_dict(self) -> dict:  # the rows so far travel in the checkpoint: a resumed run keeps them
        return {"rows": [dict(r) for r in self.rows], "warned": self.warned}

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows, self.warned = [dict(r) for r in state_dict.get("rows", [])], state_dict.get("warned", False)

    def on_train_end(self, trainer, pl_module) -> None:
        if not self.rows or not trainer.is_global_zero:
            return
        header = list(dict.fromkeys(k for r in self.rows for k in r))
        write_csv(self.path, header, ([r.get(k, "") for k in header] for r in self.rows))


def bar_on_terminal() -> bool:
    return sys.stderr.isatty()


class StderrProgressBar(TQDMProgressBar):
    """Lightning's tqdm bars on stderr, so that stdout keeps only results (tables, --json), and one bar
    left on screen per epoch (Lightning reuses one bar, so only the last epoch would stay).

    A redraw reads the logged loss back (on a GPU, waiting for its queue to drain): every ``refresh_rate``
    steps, but not more often than every REFRESH_SECONDS, however fast the steps are; the last step of an
    epoch always redraws."""

    REFRESH_SECONDS = 0.5

    def __init__(self, *args, clock=time.monotonic, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._clock, self._drawn = clock, float("-inf")

    def _should_update(self, current: int, total: int) -> bool:
        if not super()._should_update(current, total):
            return False
        now = self._clock()
        if current != total and now - self._drawn < self.REFRESH_SECONDS:
            return False
        self._drawn = now
        return True

    def on_train_epoch_start(self, trainer: L.Trainer, *args) -> None:
        if self._train_progress_bar is not None and trainer.current_epoch > 0:
            self._train_progress_bar.close()  # leave=True: the finished epoch's line stays
            self.train_progress_bar = self.init_train_tqdm()
        super().on_train_epoch_start(trainer, *args)
        # Lightning's "Epoch 0": people count from 1, as the per-epoch lines and messages do
        self.train_progress_bar.set_description(f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}")

    def init_train_tqdm(self):
        with contextlib.redirect_stdout(sys.stderr):
            return super().init_train_tqdm()

    def init_validation_tqdm(self):
        with contextlib.redirect_stdout(sys.stderr):
            return super().init_validation_tqdm()


class EpochLines(Callback):
    """One line per epoch in the log (the CLI shows it on stderr), for output that is not a terminal."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or not getattr(pl_module, "epoch_complete", True):
            return
        logged = trainer.callback_metrics
        figures = ", ".join(f"{k} {float(logged[k]):.4f}" for k in METRIC_ORDER if k in logged)
        log.info(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: {figures}")


def monitored(cfg: Config, has_val: bool) -> tuple[str, str]:
    """What 'best' and 'stopped improving' watch: the configured metric, or train loss without validation."""
    monitor = cfg.train.monitor if has_val else Metric.TRAIN_LOSS.value
    return monitor, "max" if monitor.endswith("acc") else "min"


def standard_callbacks(cfg: Config, run_dir: Path, has_val: bool) -> list[Callback]:
    monitor, mode = monitored(cfg, has_val)
    folder = Path(run_dir) / CHECKPOINTS
    callbacks: list[Callback] = [
        EpochMetricsCSV(run_dir),
        RandomState(),
        # Both at the end of each training epoch (after its validation, and after the metrics row is
        # added, since Lightning runs checkpoint callbacks last): best when the monitor improves, last always.
        ModelCheckpoint(dirpath=folder, filename=BEST, monitor=monitor, mode=mode, save_top_k=1,
                        save_on_train_epoch_end=True, enable_version_counter=False),
        ModelCheckpoint(dirpath=folder, filename=LAST, monitor=None, save_top_k=1, every_n_epochs=1,
                        save_on_train_epoch_end=True, enable_version_counter=False),
    ]
    if cfg.train.progress:
        # Rich's bar redraws from a thread of its own, which takes ~10% of a small CNN's throughput on a
        # 2-core CPU (benchmarks/overhead.py); tqdm redrawing every 10th step costs ~nothing. Not on a
        # terminal (a log file, CI), a bar is noise: one plain line per epoch instead.
        callbacks.append(StderrProgressBar(refresh_rate=PROGRESS_EVERY) if bar_on_terminal() else EpochLines())
    if cfg.train.early_stopping:
        # The course's "stop when the change in the loss is below a threshold", for `patience` epochs.
        callbacks.append(EarlyStopping(monitor=monitor, mode=mode, min_delta=cfg.train.min_delta,
                                       patience=cfg.train.patience, verbose=False))
    return callbacks
