"""``cnnlab.train``: config -> data -> model -> Lightning -> run directory."""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import signal
import time
from datetime import timedelta
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, Timer
from lightning.pytorch.trainer.states import TrainerStatus

from cnnlab import files, loggers, rundir
from cnnlab.config import Config, load_config, with_overrides
from cnnlab.data import health
from cnnlab.data.datamodule import ImageDataModule, accumulation, inverse_frequency, loader_batch_size
from cnnlab.data.prepare import Prepared, prepare
from cnnlab.errors import CnnlabError, ConfigError, Diverged, Interrupted
from cnnlab.data.augment import describe, resolved
from cnnlab.models.registry import (build_for_training, get_entry, resolve_model_config, resolve_preprocessing,
                                    weights_kind)
from cnnlab.training.source_run import adopt_source_run, load_features_from_run
from cnnlab.training import calibrate, claim, distributed, transfer
from cnnlab.training.lr_find import find_lr
from cnnlab.training.callbacks import EpochMetricsCSV, GradientFlow, bar_on_terminal, monitored, standard_callbacks
from cnnlab.training.checkpoint import AtomicCheckpointIO
from cnnlab.training.module import ImageTask



log = logging.getLogger(__name__)
RUN_DIR_ENV = "CNNLAB_RUN_DIR"
TRACKER_GRADIENT_EVERY = 50  # gradient-norm steps with a tracker (TensorBoard ...) when --gradient-every is 0


@dataclass
class TrainResult:
    run_dir: Path
    seconds: float
    epochs: int
    best_epoch: Optional[int]
    metrics: dict = field(default_factory=dict)
    stopped: Optional[str] = None  # "budget", "early stopping", or None (ran every epoch)


def _write_inputs(out: Path, cfg: Config, prepared: Prepared) -> None:
    rundir.write_inputs(out, cfg, prepared.classes, prepared.pre, prepared.records,
                        ((s.path, s.reason) for s in prepared.skipped))


def _check_health(prepared: Prepared, out: Path) -> None:
    """Training's cheap data check: exact duplicates of its images, a warning line for each problem that
    spoils a run (held-out copies of training images, one image under two classes); data_health.json."""
    found = health.exact(prepared.records)
    files.write_json(out / rundir.DATA_HEALTH, found)
    for line in health.warnings_for(found):
        log.warning(line)


def _report_data(prepared: Prepared, out: Path) -> None:
    sizes = ", ".join(f"{s} {prepared.size(s)}" for s in ("train", "val", "test") if prepared.size(s))
    what = f"{len(prepared.classes)} classes" if prepared.classes else "regression targets"
    pre = prepared.pre
    log.info(f"data: {sizes} images, {what}, input {pre.channels}x{pre.size[0]}x{pre.size[1]}"
             f"{' (in memory)' if prepared.in_memory else ''}")
    for note in prepared.notes:
        log.warning(note)
    if not prepared.size("val") and not prepared.size("test"):
        log.warning("no held-out images (no val/ or test/ folder, --val-split and --test-split "
                    "are 0): evaluate this run on other data, or its figures will be on images it trained on")
    elif not prepared.size("test"):
        log.warning("no test images (no test/ folder, or --test-split 0): this run's headline figures will be on its "
                    "validation images, which also select the model, so they are optimistic")
    if prepared.skipped:
        first = "; ".join(f"{s.path.name}: {s.reason}" for s in prepared.skipped[:3])
        more = f" and {len(prepared.skipped) - 3} more" if len(prepared.skipped) > 3 else ""
        log.warning(f"skipped {len(prepared.skipped)} unusable files ({first}{more}); "
                    f"list in {out / rundir.SKIPPED}")


def _resolve(data, out, config, resume: bool, overwrite: bool, overrides: dict,
             held: contextlib.ExitStack) -> tuple[Config, Path, Optional[Path]]:
    """The config and the run directory; rank 0 holds the directory's lock in ``held`` (training/claim.py)."""
    if resume:
        if out is None:
            raise CnnlabError("--resume needs the run directory to continue: --out RUN")
        out = Path(out)
        ckpt = rundir.checkpoint(out, rundir.LAST)
        if distributed.is_leader():
            held.enter_context(claim.resuming(out))
        cfg = rundir.load_run_config(out, overrides)
        _check(cfg)
        if not ckpt.is_file():  # stopped before its first epoch ended: the same run, from its start
            log.info(f"{out} has no checkpoint yet: starting its training again from the beginning")
            return cfg, out, None
        return cfg, out, ckpt
    cfg = with_overrides(config, overrides) if isinstance(config, Config) else load_config(config, overrides)
    if data is not None:
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"path": str(Path(data).resolve())})})
    _check(cfg)  # before anything is written or removed
    out = _run_dir(out, cfg)
    if distributed.is_leader():  # the other ranks find the run directory checked and held by rank 0
        held.enter_context(claim.fresh(out, Path(cfg.data.path) if cfg.data.path else None, overwrite))
    return cfg, out, None


def _check(cfg: Config) -> None:
    """What can be refused before any work: devices, the tracker's package, --lr auto with several processes."""
    distributed.check(cfg)
    loggers.check_installed(cfg.train.logger)
    if cfg.optim.lr == "auto" and (distributed.world_size(cfg) > 1 or cfg.train.num_nodes > 1):
        raise CnnlabError("--lr auto runs Lightning's LR finder in one process: run cnnlab lr-find DATA first, then "
                          "train on several devices with the --lr it suggests")


def from_scratch(cfg: Config) -> bool:
    return weights_kind(cfg) == "none"


def resolve_recipe(cfg: Config) -> Config:
    """The defaults that depend on the model, made explicit: the learning rate (0.003 from scratch, 0.001 for
    pretrained weights), the schedule (one-cycle's warm-up and annealing; cosine for two-phase) and the augmentation (light from scratch; none
    for pretrained backbones, whose frozen features can then be computed once)."""
    optim, augment = cfg.optim, cfg.augment
    if optim.lr is None:
        optim = optim.model_copy(update={"lr": 0.003 if from_scratch(cfg) else 0.001})
    if optim.schedule is None:
        two_phase = transfer.resolve_strategy(cfg, weights_kind(cfg)) == "two-phase"
        optim = optim.model_copy(update={"schedule": "cosine" if two_phase else "onecycle"})
    if augment.preset is None:
        augment = augment.model_copy(update={"preset": "light" if from_scratch(cfg) else "none"})
    return cfg.model_copy(update={"optim": optim, "augment": augment})


# Optimiser steps the default epoch count aims at (mnist-5k: 16 epochs of 57 steps), within EPOCH_RANGE.
# A value is a finer target than a class: regression gets more (scikit-learn's digits as values, 21
# steps an epoch: R² 0.938 after 30 epochs, 0.951-0.953 after 75; benchmarks/regression.py).
TARGET_STEPS = {"classification": 900, "regression": 1600}
EPOCH_RANGE = {"classification": (5, 30), "regression": (5, 80)}


def resolve_epochs(cfg: Config, n_train: int) -> Config:
    """Epochs unset: about TARGET_STEPS optimiser steps, within EPOCH_RANGE (one step an epoch in batch mode)."""
    if cfg.train.epochs is not None:
        return cfg
    steps = 1 if cfg.train.mode == "batch" else max(1, math.ceil(n_train / loader_batch_size(cfg)))
    low, high = EPOCH_RANGE[cfg.task]
    epochs = min(high, max(low, round(TARGET_STEPS[cfg.task] / steps)))
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": epochs})})


def _run_dir(out, cfg: Config) -> Path:
    """The run directory; every process of a multi-process run must name the same one."""
    if out is not None:
        return Path(out)
    if os.environ.get(RUN_DIR_ENV):  # set by rank 0 for the processes Lightning starts from this command
        return Path(os.environ[RUN_DIR_ENV])
    if not distributed.is_leader():
        raise CnnlabError("give the run directory with --out: every process of a multi-process run must write "
                          "to the same one")
    out = Path("runs") / f"{cfg.model.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    os.environ[RUN_DIR_ENV] = str(out)
    return out


def train(data: Union[str, Path, None] = None, out: Union[str, Path, None] = None, *,
          config: Union[Config, str, Path, None] = None, resume: bool = False, overwrite: bool = False,
          callbacks: Sequence[Callback] = (), **overrides: Any) -> TrainResult:
    """Train a model on DATA and write everything into the run directory ``out``.

    With more than one process (``devices=N``, torchrun, SLURM) every process calls this; only global
    rank 0 checks and writes the run directory, and the others return a result with no figures.
    """
    leader = distributed.is_leader()
    with quiet_unless(leader), contextlib.ExitStack() as held:  # the run directory's lock, until training ends
        cfg, out, ckpt = _resolve(data, out, config, resume, overwrite, overrides, held)
        try:
            return _train(cfg, out, ckpt, callbacks)
        except KeyboardInterrupt:  # Ctrl-C outside Lightning's loop (while preparing the data, say)
            raise _interrupted(out, None) from None


@contextlib.contextmanager
def quiet_unless(leader: bool):
    """The processes other than rank 0 log nothing of cnnlab's: one run, one voice."""
    logger = logging.getLogger("cnnlab")  # its module loggers inherit its level
    before = logger.level
    if not leader:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(before)


def _interrupted(out: Path, epoch: Optional[int]) -> Interrupted:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning ignores further Ctrl-C after the first
    last = rundir.checkpoint(out)
    kept = files.load_torch(last).get("epoch") if last.is_file() else None
    where = f" in epoch {epoch + 1}" if epoch is not None else ""  # people count epochs from 1
    keeps = f"; its checkpoint keeps the first {kept + 1} epoch{'s' if kept else ''}" if kept is not None else ""
    return Interrupted(f"interrupted{where}{keeps}; continue with: cnnlab train --resume --out {out}")


def _train(cfg: Config, out: Path, ckpt: Optional[Path], callbacks: Sequence[Callback]) -> TrainResult:
    if ckpt is not None:
        done = _already_complete(out)
        if done is not None:
            return done
        _check_same_length(cfg, ckpt, out)
        # Loaded here as well as by Lightning: a hostile or broken checkpoint is refused before any work.
        epoch = int(files.load_torch(ckpt).get("epoch", -1)) + 1
        log.info(f"resuming {out} at epoch {epoch + 1} of {cfg.train.epochs} ({epoch} done in {ckpt})")
    cfg = resolve_devices(resolve_recipe(resolve_model_config(adopt_source_run(cfg))))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    prepared = prepare(cfg, lambda probed: resolve_preprocessing(cfg, probed))
    cfg = resolve_epochs(cfg, prepared.size("train"))
    num_outputs = len(prepared.classes) if cfg.task == "classification" else 1
    train_targets = prepared.datasets["train"].targets
    if cfg.task == "regression" and cfg.data.standardize:
        std = float(train_targets.float().std()) if len(train_targets) > 1 else 0.0
        prepared.pre.target_mean = float(train_targets.float().mean())
        prepared.pre.target_std = std if std > 0 else 1.0
    class_weights = inverse_frequency(train_targets, num_outputs) if cfg.optim.class_weights == "auto" else None
    model, report = build_for_training(cfg, prepared.pre, num_outputs)
    if weights_kind(cfg) == "run":
        report = load_features_from_run(model.net, Path(cfg.model.weights), cfg.model.name)
    leader = distributed.is_leader()
    _report_data(prepared, out)
    if report is not None:
        log.info(report.line())

    strategy = transfer.resolve_strategy(cfg, weights_kind(cfg))
    transfer.check(cfg, strategy, model.net)
    cached = transfer.can_cache(cfg, strategy, augmenting=bool(resolved(cfg.augment)))
    if cached:  # the frozen backbone runs once; the head trains on its features
        prepared = replace(prepared, datasets=transfer.cache_features(model, prepared))
    has_val = prepared.size("val") > 0
    monitor, _ = monitored(cfg, has_val)
    n_train = prepared.size("train")
    task = ImageTask(transfer.CachedHead(model.net.head) if cached else model, cfg.task, num_outputs, cfg.optim,
                     monitor=monitor, full_batch_size=n_train if cfg.train.mode == "batch" else 0,
                     backbone_lr_mult=cfg.transfer.backbone_lr_mult if strategy == "fine-tune" else 1.0,
                     check_gradients=cfg.train.precision not in ("16-mixed", "16"),
                     channels_last=cfg.train.channels_last, compile=cfg.train.compile, config=cfg.model_dump(mode="json"),
                     class_weights=class_weights, target_std=prepared.pre.target_std)
    cbs = standard_callbacks(cfg, out, has_val) + [distributed.ProcessWatch()] + list(callbacks)
    progress = next(c for c in cbs if isinstance(c, EpochMetricsCSV))
    tracker = rundir.tracker(out, cfg.train.logger, out.name)
    if tracker is not None:  # the curves, the learning rate and (every 50 steps unless set) the gradient norms
        cbs.append(LearningRateMonitor(logging_interval="epoch"))
    gradient_every = cfg.train.gradient_every or (TRACKER_GRADIENT_EVERY if tracker is not None else 0)
    if gradient_every and not cached:
        cbs.append(GradientFlow(out, gradient_every))
    schedule = None if cached else transfer.schedule_callback(cfg, strategy)
    if schedule is not None:
        cbs.append(schedule)
    log.info(f"model: {cfg.model.name}, strategy {strategy}{' (cached features)' if cached else ''}, "
             f"augmentation: {describe(cfg.augment)}")
    if cfg.train.deterministic:  # Lightning sets deterministic algorithms and the cuBLAS workspace; cuDNN too
        torch.backends.cudnn.deterministic = True
    if cfg.train.compile:
        log.info("compiling the model with torch.compile: the first steps (and the first validation) take "
                 "longer while it compiles")
    world = distributed.world_size(cfg)
    trainer = L.Trainer(
        max_epochs=cfg.train.epochs, max_time=timedelta(seconds=cfg.train.max_time) if cfg.train.max_time else None,
        accelerator=cfg.train.accelerator, devices=cfg.train.devices,
        strategy=distributed.strategy(cfg), num_nodes=cfg.train.num_nodes, precision=cfg.train.precision,
        use_distributed_sampler=False,  # the data module deals out every rank's share itself (same steps on each)
        accumulate_grad_batches=accumulation(cfg, n_train, world), callbacks=cbs, logger=tracker or False,
        enable_progress_bar=cfg.train.progress and bar_on_terminal(), enable_model_summary=False, num_sanity_val_steps=0,
        default_root_dir=out, log_every_n_steps=10, plugins=[AtomicCheckpointIO()],
        deterministic=cfg.train.deterministic or None, benchmark=False if cfg.train.deterministic else None,
    )
    datamodule = ImageDataModule(prepared, cfg)
    if cfg.optim.lr == "auto":  # Lightning's LR finder; the value it picks is written into config.yaml
        lr = find_lr(trainer, task, datamodule, out if leader else None)
        if not any(isinstance(c, _StopAfterRangeTest) for c in callbacks):  # cnnlab lr-find prints its own answer
            log.info(f"--lr auto: the LR finder suggests {lr:.3g}")
        cfg = cfg.model_copy(update={"optim": cfg.optim.model_copy(update={"lr": lr})})
        task.optim_cfg = cfg.optim
        task.hparams["config"] = cfg.model_dump(mode="json")
    # Every setting is resolved: the run's files are written only now, so that an error before this point
    # leaves no half-written run behind (a retry of the same command works).
    meta = rundir.weights_metadata(cfg, prepared.pre, prepared.classes)
    if leader:
        _write_inputs(out, cfg, prepared)
        _check_health(prepared, out)
    try:
        trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt, weights_only=True if ckpt else None)
    except SystemExit:
        if trainer.state.status != TrainerStatus.INTERRUPTED:
            raise
        # Lightning turns Ctrl-C into sys.exit(1): say instead how to go on.
        raise _interrupted(out, trainer.current_epoch) from None
    except Diverged as exc:  # every rank at once (a collective decision); rank 0 keeps the best epoch
        if not leader:
            raise
        best_epoch = _keep_best(model, out, meta)
        rundir.write_training(out, {"complete": False, "diverged": str(exc), "best_epoch": best_epoch,
                                                 "seconds": round(progress.elapsed(), 2)})
        kept = f"; the weights of epoch {best_epoch + 1}, the best before it, are in {rundir.weights_path(out)}" \
            if best_epoch is not None else ""
        raise Diverged(f"{exc}{kept}") from None
    except Exception as exc:  # the processes this one started were stopped by ProcessWatch.on_exception
        if trainer.world_size > 1 and _collective_failure(exc):
            raise CnnlabError(f"another training process of this run stopped (rank {trainer.global_rank} lost it "
                              f"in a collective: {str(exc).splitlines()[0][:160]}); its message is above. Continue "
                              f"with: cnnlab train --resume --out {out}") from None
        raise
    if not leader:
        return TrainResult(out, progress.elapsed(), trainer.current_epoch, None)
    return _finish(trainer, model, out, progress.elapsed(), monitor, strategy, meta, task, datamodule, cfg)


class _RangeTestDone(Exception):
    """Raised at the start of training by ``find_learning_rate``: the range test ran, nothing more to do."""


class _StopAfterRangeTest(Callback):
    def on_train_start(self, trainer, pl_module) -> None:
        raise _RangeTestDone()


def find_learning_rate(data, png: Union[str, Path], *, config: Union[Config, str, Path, None] = None,
                       **overrides: Any) -> tuple[float, Path]:
    """``cnnlab lr-find``: the same setup as ``train`` (data, model, augmentation, batch size), the LR range
    test, and no training. Returns the suggested learning rate and the plot written to ``png``."""
    import tempfile

    from cnnlab.training.lr_find import LR_FIND_JSON, LR_FIND_PNG

    with tempfile.TemporaryDirectory(prefix="cnnlab-lr-find-") as tmp:
        run = Path(tmp) / "run"
        try:
            train(data, run, config=config, callbacks=[_StopAfterRangeTest()],
                  **{**overrides, "lr": "auto", "calibrate": False, "logger": "csv"})
        except _RangeTestDone:
            pass
        found = json.loads((run / LR_FIND_JSON).read_text()) if (run / LR_FIND_JSON).is_file() else None
        if found is None:
            raise CnnlabError("the LR finder did not run: see the messages above")
        png = Path(png)
        png.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run / LR_FIND_PNG, png)
    return float(found["suggestion"]), png


def resolve_devices(cfg: Config) -> Config:
    """The device choices made explicit for this machine (written into the run as made). channels_last
    defaults to on only where benchmarks/cpu_speed.py measured it faster end to end: the custom CNNs on
    the CPU (cnn-small on mnist-5k: 1.1-1.2x); not resnet18 on the CPU (1.0x), not measured on GPUs."""
    if cfg.train.channels_last is not None:
        return cfg
    on = distributed.accelerator(cfg) == "cpu" and not get_entry(cfg.model.name).pretrained
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"channels_last": on})})


def _collective_failure(exc: BaseException) -> bool:
    """An error from a collective that another process left (gloo's closed connection, NCCL's abort)."""
    dist_error = getattr(torch.distributed, "DistError", RuntimeError)
    text = str(exc)
    return isinstance(exc, dist_error) or any(s in text for s in ("Connection closed by peer", "Connection reset",
                                                                  "NCCL", "gloo", "Broken pipe"))


def _already_complete(out: Path) -> Optional[TrainResult]:
    """A run whose training finished: --resume changes nothing (runs before this field count as finished)."""
    info = rundir.Run.training_file(out)
    if not info or not info.get("complete", True) or not rundir.weights_path(out).is_file():
        return None
    log.info(f"{out} is already complete: {info.get('epochs')} epochs in {info.get('seconds')} s; "
             f"nothing to resume (train further with a new run: --weights {out})")
    return TrainResult(out, float(info.get("seconds", 0.0)), int(info.get("epochs", 0)), info.get("best_epoch"),
                       info.get("final", {}), info.get("stopped"))


def _check_same_length(cfg: Config, ckpt: Path, out: Path) -> None:
    """--resume continues a run to the end it started for: its schedule (one-cycle's total steps, cosine's
    period) and two-phase's head epochs are fixed by that length, and the checkpoint restores them."""
    saved = (files.load_torch(ckpt).get("hyper_parameters") or {}).get("config", {})
    started = saved.get("train", {}).get("epochs") if saved else rundir.load_run_config(out).train.epochs
    if started is None or started == cfg.train.epochs:
        return
    raise ConfigError(f"{out} was started for {started} epochs, and --resume continues it to that end (its learning-"
                      f"rate schedule is fixed by that length): leave out --epochs, or train further in a new run "
                      f"from its weights: cnnlab train DATA --weights {out} --out NEW --epochs {cfg.train.epochs}")


def _keep_best(model, out: Path, meta: dict[str, str]) -> Optional[int]:
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


def _finish(trainer: L.Trainer, model, out: Path, seconds: float, monitor: str, strategy: str,
            meta: dict[str, str], task: ImageTask, datamodule: ImageDataModule, cfg: Config) -> TrainResult:
    best_epoch = _keep_best(model, out, meta)
    if best_epoch is None:
        rundir.save_weights(model.net, rundir.weights_path(out), meta)
    if cfg.task == "classification" and cfg.train.calibrate:
        calibrate.calibrate_run(task, datamodule, out, trainer.strategy.root_device, cfg.seed)
    rows = rundir.metrics_rows(out)
    # the last epoch's figures; its time is not one ("seconds" below is the whole training's)
    final = {k: float(v) for k, v in (rows[-1] if rows else {}).items()
             if v not in ("", None) and k not in ("epoch", "seconds")}
    epochs = len(rows)  # complete epochs: one cut short by a budget has no row
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    stopped = "budget" if timer is not None and (timer.time_remaining() or 0) <= 0 else \
        "early stopping" if epochs < trainer.max_epochs else None
    if stopped:
        log.info(f"stopped by {stopped} after {epochs} of {trainer.max_epochs} epochs")
    info = {"complete": True, "seconds": round(seconds, 2), "epochs": epochs, "best_epoch": best_epoch,
            "monitor": monitor, "stopped": stopped, "stopped_early": stopped == "early stopping",
            "strategy": strategy, "final": final, "device": str(trainer.strategy.root_device)}
    rundir.write_training(out, info)
    return TrainResult(out, seconds, epochs, best_epoch, final, stopped)
