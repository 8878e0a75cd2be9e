"""After training (or its divergence): the best weights, calibration, and training.json from the trainer's
state (the metrics callback's rows, not metrics.csv read back)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import lightning as L
from lightning.pytorch.callbacks import Timer

from cnnlab import files, rundir
from cnnlab.artifacts import TrainingInfo
from cnnlab.training import calibrate_run
from cnnlab.training.callbacks import EpochMetricsCSV
from cnnlab.training.plan import Plan
from cnnlab.catalog.names import Task

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    seconds: float
    epochs: int
    best_epoch: Optional[int]
    metrics: dict = field(default_factory=dict)
    stopped: Optional[str] = None  # "budget", "early stopping", or None (ran every epoch)


def keep_best(model, out: Path, meta: dict[str, str]) -> Optional[int]:
    """Load the best checkpoint's weights into ``model`` and write model.safetensors; the epoch, or None."""
    best_path = rundir.checkpoint(out, rundir.BEST)
    if not best_path.is_file():
        return None
    state = files.load_torch(best_path)
    prefix = "model.net."
    best = {k[len(prefix):]: v for k, v in state["state_dict"].items() if k.startswith(prefix)}
    unknown = model.net.load_state_dict(best, strict=False).unexpected_keys
    assert not unknown, unknown  # the checkpoint holds this model's weights (all, or the head when cached)
    rundir.save_weights(model.net, rundir.weights_path(out), meta)
    return int(state.get("epoch", -1))


def training_info(trainer: L.Trainer, progress: EpochMetricsCSV, plan: Plan, best_epoch: Optional[int],
                  seconds: float) -> TrainingInfo:
    """What training did, from the trainer and the rows its metrics callback holds (complete epochs only: one
    cut short by a budget has no row)."""
    rows = progress.rows
    # the last epoch's figures; its time is not one ("seconds" is the whole training's)
    final = {k: float(v) for k, v in (rows[-1] if rows else {}).items()
             if v not in ("", None) and k not in ("epoch", "seconds")}
    epochs = len(rows)
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    stopped = "budget" if timer is not None and (timer.time_remaining() or 0) <= 0 else \
        "early stopping" if epochs < trainer.max_epochs else None
    if stopped:
        log.info(f"stopped by {stopped} after {epochs} of {trainer.max_epochs} epochs")
    return TrainingInfo(complete=True, seconds=round(seconds, 2), epochs=epochs, best_epoch=best_epoch,
                        monitor=plan.monitor, stopped=stopped, stopped_early=stopped == "early stopping",
                        strategy=plan.strategy.name, final=final, device=str(trainer.strategy.root_device))


def finish(trainer: L.Trainer, model, out: Path, plan: Plan, meta: dict[str, str], task, datamodule,
           progress: EpochMetricsCSV) -> TrainResult:
    seconds = progress.elapsed()
    best_epoch = keep_best(model, out, meta)
    if best_epoch is None:
        rundir.save_weights(model.net, rundir.weights_path(out), meta)
    if plan.config.task == Task.CLASSIFICATION and plan.config.train.calibrate:
        calibrate_run.calibrate_run(task, datamodule, out, trainer.strategy.root_device, plan.config.seed)
    info = training_info(trainer, progress, plan, best_epoch, seconds)
    rundir.write_training(out, info)
    return TrainResult(out, seconds, info.epochs, best_epoch, info.final, info.stopped)


def diverged(model, out: Path, meta: dict[str, str], progress: EpochMetricsCSV, why: str) -> str:
    """training.json of a diverged run (rank 0 keeps the best epoch's weights); the message to raise."""
    best_epoch = keep_best(model, out, meta)
    rundir.write_training(out, TrainingInfo(complete=False, diverged=why, best_epoch=best_epoch,
                                            seconds=round(progress.elapsed(), 2)))
    kept = f"; the weights of epoch {best_epoch + 1}, the best before it, are in {rundir.weights_path(out)}" \
        if best_epoch is not None else ""
    return f"{why}{kept}"


def already_complete(out: Path) -> Optional[TrainResult]:
    """A run whose training finished: --resume changes nothing (runs before this field count as finished)."""
    info = rundir.read_training(out)
    if info is None or not info.complete or not rundir.weights_path(out).is_file():
        return None
    log.info(f"{out} is already complete: {info.epochs} epochs in {info.seconds} s; "
             f"nothing to resume (train further with a new run: --weights {out})")
    return TrainResult(out, float(info.seconds or 0.0), int(info.epochs or 0), info.best_epoch, info.final, info.stopped)
