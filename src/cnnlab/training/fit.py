"""``cnnlab.train``: config -> plan -> data module, task, trainer -> run directory."""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerStatus

from cnnlab import files, rundir
from cnnlab.catalog import loggers
from cnnlab.config import Config, load_config, with_overrides
from cnnlab.data import health
from cnnlab.data.augment_batches import describe
from cnnlab.data.datamodule import ImageDataModule
from cnnlab.data.prepare import Prepared, prepare
from cnnlab.errors import CnnlabError, ConfigError, Diverged, Interrupted
from cnnlab.models.registry import build_for_training, resolve_preprocessing
from cnnlab.training import build, claim, distributed, ema, finish, lr_find, transfer
from cnnlab.training.callbacks import EpochMetricsCSV, bar_on_terminal
from cnnlab.training.finish import TrainResult
from cnnlab.training.plan import Plan, Settled, make_plan, num_outputs, settle
from cnnlab.training.source_run import load_features_from_run
from cnnlab.catalog.names import Task

__all__ = ["train", "find_learning_rate", "TrainResult"]

log = logging.getLogger(__name__)
RUN_DIR_ENV = "CNNLAB_RUN_DIR"


def _write_inputs(out: Path, plan: Plan, prepared: Prepared) -> None:
    """What the run starts from, written once the plan is complete, so that an error before it leaves no
    half-written run behind (a retry of the same command works)."""
    rundir.write_inputs(out, plan.config, prepared.classes, prepared.pre, prepared.records,
                        ((s.path, s.reason) for s in prepared.skipped))
    _check_health(prepared, out)
    if plan.range_test is not None:
        lr_find.write(plan.range_test, out)


def _check_health(prepared: Prepared, out: Path) -> None:
    """Training's cheap data check: exact duplicates of its images, a warning line for each problem that
    spoils a run (held-out copies of training images, one image under two classes); data_health.json."""
    found = health.exact(prepared.records)
    rundir.write_data_health(out, found)
    for line in health.warnings_for(found):
        log.warning(line)


def _report_data(prepared: Prepared, out: Optional[Path]) -> None:
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
        listed = f"; list in {out / rundir.SKIPPED}" if out is not None else ""
        log.warning(f"skipped {len(prepared.skipped)} unusable files ({first}{more}){listed}")


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
    cfg = _config(data, config, overrides)  # checked before anything is written or removed
    out = _run_dir(out, cfg)
    if distributed.is_leader():  # the other ranks find the run directory checked and held by rank 0
        held.enter_context(claim.fresh(out, Path(cfg.data.path) if cfg.data.path else None, overwrite))
    return cfg, out, None


def _config(data, config, overrides: dict) -> Config:
    cfg = with_overrides(config, overrides) if isinstance(config, Config) else load_config(config, overrides)
    if data is not None:
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"path": str(Path(data).resolve())})})
    _check(cfg)
    return cfg


def _check(cfg: Config) -> None:
    """What can be refused before any work: devices, the tracker's package, --lr auto with several processes."""
    distributed.check(cfg)
    loggers.check_installed(cfg.train.logger)
    if cfg.optim.lr == "auto" and (distributed.world_size(cfg) > 1 or cfg.train.num_nodes > 1):
        raise CnnlabError("--lr auto runs Lightning's LR finder in one process: run cnnlab lr-find DATA first, then "
                          "train on several devices with the --lr it suggests")


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
    if ckpt is not None and (done := _resume_point(cfg, out, ckpt)) is not None:
        return done
    settled = settle(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    prepared, model = _data_and_model(settled, out)
    plan = make_plan(settled, prepared, find_lr=_range_test(model, prepared))
    _log_plan(plan)
    tracker = rundir.tracker(out, plan.config.train.logger, out.name)
    cbs = build.callbacks(plan, out, prepared.size("val") > 0, callbacks, tracker)
    progress = next(c for c in cbs if isinstance(c, EpochMetricsCSV))
    trainer = build.trainer(plan, out, cbs, tracker, prepared.size("train"))
    task, datamodule = build.task(plan, model, prepared), ImageDataModule(prepared, plan.config)
    meta = rundir.weights_metadata(plan.config, prepared.pre, prepared.classes)
    if distributed.is_leader():
        _write_inputs(out, plan, prepared)
    _fit(trainer, task, datamodule, ckpt, out, lambda why: finish.diverged(model, out, meta, progress, why))
    if not distributed.is_leader():
        return TrainResult(out, progress.elapsed(), trainer.current_epoch, None)
    return finish.finish(trainer, model, out, plan, meta, task, datamodule, progress)


def _resume_point(cfg: Config, out: Path, ckpt: Path) -> Optional[TrainResult]:
    """A finished run's result (nothing to resume), or None after checking that the checkpoint continues it."""
    done = finish.already_complete(out)
    if done is not None:
        return done
    _check_same_length(cfg, ckpt, out)
    # Loaded here as well as by Lightning: a hostile or broken checkpoint is refused before any work.
    epoch = int(files.load_torch(ckpt).get("epoch", -1)) + 1
    log.info(f"resuming {out} at epoch {epoch + 1} of {cfg.train.epochs} ({epoch} done in {ckpt})")
    return None


def _data_and_model(settled: Settled, out: Optional[Path]):
    """The prepared data (with the frozen backbone's features when they are cached) and the model with its
    starting weights."""
    cfg = settled.config
    prepared = _standardized(prepare(cfg, lambda probed: resolve_preprocessing(cfg, probed, settled.weights)), cfg)
    model, report = build_for_training(cfg, prepared.pre, num_outputs(cfg, prepared), settled.weights)
    if settled.weights == "run":
        report = load_features_from_run(model.net, Path(cfg.model.weights), cfg.model.name)
    _report_data(prepared, out)
    if report is not None:
        log.info(report.line())
    transfer.check(cfg, settled.strategy, model.net)
    if settled.cached:  # the frozen backbone runs once; the head trains on its features
        prepared = replace(prepared, datasets=transfer.cache_features(model, prepared))
    return prepared, model


def _standardized(prepared: Prepared, cfg: Config) -> Prepared:
    """Regression on standardised targets: the training split's mean and std, kept in the run's preprocessing."""
    if cfg.task != Task.REGRESSION or not cfg.data.standardize:
        return prepared
    targets = prepared.datasets["train"].targets.float()
    std = float(targets.std()) if len(targets) > 1 else 0.0
    pre = replace(prepared.pre, target_mean=float(targets.mean()), target_std=std if std > 0 else 1.0)
    return replace(prepared, pre=pre)


def _range_test(model, prepared: Prepared) -> Callable[[Plan], lr_find.RangeTest]:
    """--lr auto: the range test on a probe task of ``plan``'s shape and a trainer of its own."""
    def run(probe: Plan) -> lr_find.RangeTest:
        return lr_find.find_lr(build.task(probe, model, prepared, probe=True), ImageDataModule(prepared, probe.config),
                               build.trainer_options(probe, prepared.size("train")),
                               show_bar=probe.config.train.progress and bar_on_terminal())
    return run


def _log_plan(plan: Plan) -> None:
    if plan.range_test is not None:
        log.info(f"--lr auto: the LR finder suggests {plan.lr:.3g}")
    log.info(f"model: {plan.model}, strategy {plan.strategy.name}{' (cached features)' if plan.cached else ''}, "
             f"augmentation: {describe(plan.config.augment)}")


def _fit(trainer: L.Trainer, task, datamodule, ckpt: Optional[Path], out: Path,
         on_diverged: Callable[[str], str]) -> None:
    """Lightning's fit, its failures said as what to do next."""
    try:
        trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt, weights_only=True if ckpt else None)
    except SystemExit:
        if trainer.state.status != TrainerStatus.INTERRUPTED:
            raise
        # Lightning turns Ctrl-C into sys.exit(1): say instead how to go on.
        raise _interrupted(out, trainer.current_epoch) from None
    except Diverged as exc:  # every rank at once (a collective decision); rank 0 keeps the best epoch
        if not distributed.is_leader():
            raise
        raise Diverged(on_diverged(str(exc))) from None
    except Exception as exc:  # the processes this one started were stopped by ProcessWatch.on_exception
        if trainer.world_size > 1 and _collective_failure(exc):
            raise CnnlabError(f"another training process of this run stopped (rank {trainer.global_rank} lost it "
                              f"in a collective: {str(exc).splitlines()[0][:160]}); its message is above. Continue "
                              f"with: cnnlab train --resume --out {out}") from None
        raise


def find_learning_rate(data, png: Union[str, Path], *, config: Union[Config, str, Path, None] = None,
                       **overrides: Any) -> tuple[float, Path]:
    """``cnnlab lr-find``: the same plan as ``train`` (data, model, augmentation, batch size) up to the LR range
    test, and no training. Returns the suggested learning rate and the plot written to ``png``."""
    cfg = _config(data, config, {**overrides, "lr": "auto", "calibrate": False, "logger": "csv"})
    settled = settle(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    prepared, model = _data_and_model(settled, None)
    plan = make_plan(settled, prepared, find_lr=_range_test(model, prepared))
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    lr_find.plot(plan.range_test, png)
    return plan.lr, png


def _collective_failure(exc: BaseException) -> bool:
    """An error from a collective that another process left (gloo's closed connection, NCCL's abort)."""
    dist_error = getattr(torch.distributed, "DistError", RuntimeError)
    text = str(exc)
    return isinstance(exc, dist_error) or any(s in text for s in ("Connection closed by peer", "Connection reset",
                                                                  "NCCL", "gloo", "Broken pipe"))


def _check_same_length(cfg: Config, ckpt: Path, out: Path) -> None:
    """--resume continues a run to the end it started for: its schedule (one-cycle's total steps, cosine's
    period) and two-phase's head epochs are fixed by that length, and the checkpoint restores them."""
    saved = (files.load_torch(ckpt).get("hyper_parameters") or {}).get("config", {})
    ema.check_same_average(saved.get("optim", {}).get("ema") if saved else rundir.load_run_config(out).optim.ema,
                           cfg.optim.ema, out)
    started = saved.get("train", {}).get("epochs") if saved else rundir.load_run_config(out).train.epochs
    if started is None or started == cfg.train.epochs:
        return
    raise ConfigError(f"{out} was started for {started} epochs, and --resume continues it to that end (its learning-"
                      f"rate schedule is fixed by that length): leave out --epochs, or train further in a new run "
                      f"from its weights: cnnlab train DATA --weights {out} --out NEW --epochs {cfg.train.epochs}")
