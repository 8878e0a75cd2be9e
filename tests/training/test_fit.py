import copy
import json
import logging
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.callbacks import Callback

import cnnlab
from conftest import TINY, write_images, write_regression_manifest
from cnnlab import rundir
from cnnlab.errors import CnnlabError
from cnnlab.catalog.optim import OPTIMIZERS, SCHEDULES


def test_run_directory_holds_everything_later_stages_need(tiny_run):
    for name in (*rundir.REQUIRED, rundir.SPLIT, rundir.SKIPPED, rundir.METRICS, rundir.TRAINING):
        assert (tiny_run / name).is_file(), name
    assert json.loads((tiny_run / "classes.json").read_text()) == ["a", "b", "c"]
    rows = rundir.read_csv(tiny_run / rundir.METRICS)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"} <= set(rows[0])
    split = rundir.read_csv(tiny_run / rundir.SPLIT)
    assert len(split) == 60 and {r["split"] for r in split} == {"train", "val", "test"}


def test_training_learns_the_task(tiny_run):
    rows = rundir.read_csv(tiny_run / rundir.METRICS)
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert float(rows[-1]["val_acc"]) >= 0.8


def test_corrupt_files_are_skipped_and_reported(tmp_path):
    data = write_images(tmp_path / "d", {"a": 8, "b": 8})
    (data / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (data / "b" / "empty.jpg").write_bytes(b"")
    (data / "b" / "notes.txt").write_text("x")
    result = cnnlab.train(data, tmp_path / "run", epochs=1, **TINY)
    skipped = {r["path"].rsplit("/", 1)[-1]: r["reason"] for r in rundir.read_csv(result.run_dir / rundir.SKIPPED)}
    assert set(skipped) == {"broken.png", "empty.jpg", "notes.txt"}
    assert skipped["empty.jpg"] == "empty file"
    assert len(rundir.read_csv(result.run_dir / rundir.SPLIT)) == 16


def test_class_with_only_bad_files_is_an_error(tmp_path):
    data = write_images(tmp_path / "d", {"a": 4, "b": 4})
    (data / "c").mkdir()
    (data / "c" / "bad.png").write_bytes(b"nope")
    with pytest.raises(CnnlabError, match="class 'c' has no usable image"):
        cnnlab.train(data, tmp_path / "run", epochs=1, **TINY)


def test_existing_run_is_not_overwritten_by_accident(tiny_run, bars):
    with pytest.raises(CnnlabError, match="already holds a run"):
        cnnlab.train(bars, tiny_run, epochs=1, **TINY)


class _Record(Callback):
    """Keeps the initial weights, the training tensors and the number of optimiser steps."""

    def on_fit_start(self, trainer, pl_module):
        self.initial = copy.deepcopy(pl_module.model.net.state_dict())
        ds = trainer.datamodule.prepared.datasets["train"]
        self.x, self.y = ds.images, ds.targets

    def on_train_end(self, trainer, pl_module):
        self.steps = trainer.global_step


def test_batch_mode_is_one_exact_full_batch_gradient_step(tmp_path, bars):
    rec = _Record()
    # 60 images, val 0 -> 60 train in chunks of 16 (the last chunk has 12): still the exact full-batch mean.
    result = cnnlab.train(bars, tmp_path / "run", epochs=1, mode="batch", batch_size=16, val_split=0.0, schedule="none",
                          optimizer="sgd", momentum=0.0, lr=0.5, batch_norm=False, callbacks=[rec], **TINY)
    assert rec.steps == 1
    model = cnnlab.load(result.run_dir).model
    trained = {k: v.clone() for k, v in model.net.state_dict().items()}
    model.net.load_state_dict(rec.initial)
    model.train()
    smoothing = rundir.load_run_config(result.run_dir).optim.label_smoothing
    assert smoothing == 0.1  # the default from scratch: the exact step is of the loss the run trains on
    loss = torch.nn.functional.cross_entropy(model(rec.x), rec.y, label_smoothing=smoothing)
    loss.backward()
    for name, p in model.net.named_parameters():
        assert torch.allclose(trained[name], p.detach() - 0.5 * p.grad, atol=1e-5), name


def test_stochastic_mode_updates_once_per_sample(tmp_path, bars):
    rec = _Record()
    cnnlab.train(bars, tmp_path / "run", epochs=1, mode="stochastic", val_split=0.5, test_split=0.0, batch_norm=False,
                 callbacks=[rec], **TINY)
    assert rec.steps == 30


def test_minibatch_mode_updates_once_per_batch(tmp_path, bars):
    rec = _Record()
    cnnlab.train(bars, tmp_path / "run", epochs=2, batch_size=8, val_split=0.0, test_split=0.0, callbacks=[rec], **TINY)
    assert rec.steps == 2 * 8  # ceil(60 / 8) per epoch


def test_early_stopping_when_the_loss_stops_changing(tmp_path, bars):
    # A huge min_delta means no epoch counts as an improvement: stop after `patience` epochs.
    result = cnnlab.train(bars, tmp_path / "run", epochs=20, early_stopping=True, min_delta=100.0, patience=2, **TINY)
    assert result.epochs == 3
    assert json.loads((result.run_dir / rundir.TRAINING).read_text())["stopped_early"] is True


class Optimiser(Callback):
    """The optimiser and schedulers Lightning trains with, and the steps an epoch."""

    def on_train_start(self, trainer, pl_module):
        self.optimizer, self.schedulers = trainer.optimizers[0], trainer.lr_scheduler_configs
        self.steps = trainer.num_training_batches


OPTIMIZER_CLASSES = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
                     "rmsprop": torch.optim.RMSprop}


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_each_optimizer_is_built_with_the_configured_hyperparameters(tmp_path, bars, name):
    seen = Optimiser()
    cnnlab.train(bars, tmp_path / "run", epochs=1, optimizer=name, lr=0.02, weight_decay=0.003, momentum=0.8,
                 nesterov=True, schedule="none", callbacks=[seen], **TINY)
    assert type(seen.optimizer) is OPTIMIZER_CLASSES[name]
    group = seen.optimizer.param_groups[0]
    assert group["lr"] == 0.02 and group["weight_decay"] == 0.003
    if name in ("sgd", "rmsprop"):
        assert group["momentum"] == 0.8
    if name == "sgd":
        assert group["nesterov"] is True
    assert group.get("fused") is (True if name in ("adam", "adamw") else None)  # the CPU's fused kernel


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_the_fused_adam_step_is_the_textbook_step(name):
    """The fused kernel cnnlab picks on the CPU makes torch's per-tensor update, to float rounding."""
    from cnnlab.config import OptimConfig

    torch.manual_seed(0)
    start = [torch.randn(64, 32), torch.randn(32)]
    weights = {kind: [t.clone().requires_grad_() for t in start] for kind in ("fused", "loop")}
    fused = OPTIMIZERS.get(name)([{"params": weights["fused"]}], OptimConfig(lr=0.01, weight_decay=0.01))
    loop = OPTIMIZER_CLASSES[name](weights["loop"], lr=0.01, weight_decay=0.01, foreach=False)
    assert fused.param_groups[0]["fused"] is True
    for step in range(5):
        grads = [torch.randn_like(t) for t in start]
        for opt, kind in ((fused, "fused"), (loop, "loop")):
            for w, g in zip(weights[kind], grads):
                w.grad = g.clone()
            opt.step()
    for a, b, s in zip(weights["fused"], weights["loop"], start):
        assert torch.allclose(a, b, rtol=0, atol=1e-6) and not torch.allclose(a, s, atol=1e-3)


def _expected_lrs(name: str, lr: float, epochs: int, steps: int, val_losses: list[float]) -> list[float]:
    """The rate each epoch starts with: closed forms, and torch's own schedulers replayed as the oracle
    where the rate depends on the run (plateau: the validation losses) or on every step (onecycle)."""
    if name == "none":
        return [lr] * epochs
    if name == "step":  # step_size 1, gamma 0.5
        return [lr * 0.5 ** e for e in range(epochs)]
    if name == "cosine":
        return [lr * (1 + math.cos(math.pi * e / epochs)) / 2 for e in range(epochs)]
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    if name == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=2)
        out = []
        for loss in val_losses:
            out.append(opt.param_groups[0]["lr"])
            sched.step(loss)
        return out
    assert name == "onecycle", f"no expected rates for schedule {name}: add them here"
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps)
    out = []
    for step in range(epochs * steps):
        if step % steps == 0:
            out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_each_schedule_sets_the_rate_of_each_epoch_by_its_formula(tmp_path, bars, name):
    seen = Optimiser()
    result = cnnlab.train(bars, tmp_path / "run", epochs=4, optimizer="sgd", lr=0.05, schedule=name, step_size=1,
                          gamma=0.5, callbacks=[seen], **TINY)
    rows = rundir.read_csv(result.run_dir / rundir.METRICS)
    expected = _expected_lrs(name, 0.05, 4, seen.steps, [float(r["val_loss"]) for r in rows])
    assert [float(r["lr"]) for r in rows] == pytest.approx(expected, rel=1e-5)
    kinds = {s.scheduler.__class__.__name__ for s in seen.schedulers}
    assert kinds == {"none": set(), "step": {"StepLR"}, "cosine": {"CosineAnnealingLR"},
                     "plateau": {"ReduceLROnPlateau"}, "onecycle": {"OneCycleLR"}}[name]


class _Crash(Callback):
    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise RuntimeError("simulated power cut")


def test_resume_continues_an_interrupted_run_to_the_same_end(tmp_path, bars):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="power cut"):
        cnnlab.train(bars, out, epochs=4, callbacks=[_Crash()], **TINY)
    assert [r["epoch"] for r in rundir.read_csv(out / rundir.METRICS)] == ["0", "1"]
    assert not (out / rundir.WEIGHTS).exists()
    result = cnnlab.train(out=out, resume=True)
    epochs = [int(r["epoch"]) for r in rundir.read_csv(out / rundir.METRICS)]
    assert epochs == [0, 1, 2, 3] and result.epochs == 4
    assert (out / rundir.WEIGHTS).is_file()


def test_resume_without_a_checkpoint_is_an_error(tmp_path):
    with pytest.raises(CnnlabError, match="nothing to resume"):
        cnnlab.train(out=tmp_path, resume=True)


def test_regression_from_a_csv_manifest(tmp_path):
    write_regression_manifest(tmp_path, 12)
    files = sorted((tmp_path / "imgs").rglob("*.png"))
    result = cnnlab.train(tmp_path / "m.csv", tmp_path / "run", task="regression", epochs=8, lr=0.01, **TINY)
    rows = rundir.read_csv(result.run_dir / rundir.METRICS)
    assert {"train_mae", "val_mae", "val_rmse", "val_r2"} <= set(rows[-1])
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    metrics = cnnlab.evaluate(result.run_dir, tmp_path / "m.csv")
    held_out = [r for r in rundir.read_csv(result.run_dir / rundir.SPLIT) if r["split"] == "test"]
    assert set(metrics) >= {"mae", "rmse", "r2"} and metrics["n"] == len(held_out) == 4  # its own test images
    assert cnnlab.evaluate(result.run_dir, tmp_path / "m.csv", split="all")["n"] == 36
    pred = cnnlab.load(result.run_dir).predict(files[0])[0]
    assert isinstance(pred.label, float) and pred.probability is None


class _SpoilMetricsCsv(Callback):
    """At the end of training, leaves metrics.csv with its header only, and keeps what the trainer logged."""

    def on_train_end(self, trainer, pl_module):
        self.logged = {k: float(v) for k, v in trainer.callback_metrics.items()}
        (Path(trainer.default_root_dir) / rundir.METRICS).write_text("epoch\n")


def test_training_json_comes_from_the_trainers_state_not_metrics_csv_read_back(tmp_path, bars):
    spoil = _SpoilMetricsCsv()
    result = cnnlab.train(bars, tmp_path / "run", epochs=2, batch_size=16, callbacks=[spoil], **TINY)
    info = rundir.Run.open(result.run_dir).training()
    assert isinstance(info, rundir.TrainingInfo) and info.complete and info.epochs == 2 == result.epochs
    assert info.strategy == "full" and info.monitor == "val_loss" and info.best_epoch in (0, 1)
    for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
        assert info.final[key] == pytest.approx(spoil.logged[key], rel=1e-5)  # metrics.csv keeps 6 digits
    assert json.loads((result.run_dir / rundir.TRAINING).read_text()) == info.model_dump(mode="json", exclude_unset=True)


def test_the_per_epoch_line_is_a_log_record_not_a_print(caplog, capsys):
    from cnnlab.training.callbacks import EpochLines

    trainer = SimpleNamespace(is_global_zero=True, current_epoch=1, max_epochs=3,
                              callback_metrics={"train_loss": torch.tensor(0.25), "val_acc": torch.tensor(0.5)})
    with caplog.at_level(logging.INFO, logger="cnnlab"):
        EpochLines().on_train_epoch_end(trainer, SimpleNamespace(epoch_complete=True))
    assert [r.getMessage() for r in caplog.records] == ["epoch 2/3: train_loss 0.2500, val_acc 0.5000"]
    assert capsys.readouterr().err == ""
