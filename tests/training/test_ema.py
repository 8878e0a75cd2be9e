"""--ema DECAY (training/ema.py): the average against torch's AveragedModel, what is validated and saved,
exact resume, off by default, bad values, DDP."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from safetensors.torch import load_file
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import cnnlab
from cnnlab import files, rundir
from cnnlab.data.samples import export
from conftest import TINY, invoke
from kills import killed_in_fork_then_resumed, tensors_sha256

# Dropout and rotation: every source of randomness in a step is in play; batch 8: a few steps an epoch.
SETTINGS = {**TINY, "epochs": 3, "batch_size": 8, "dropout": 0.3, "rotation": 10}
DECAY = 0.9  # short enough for a few steps to move the average well away from the last weights


class Reference(Callback):
    """torch's own AveragedModel with the same EMA over the same steps, kept beside the run; the weights that
    validation sees, recorded at each epoch's first validation batch."""

    def __init__(self) -> None:
        self.average, self.at_epoch_end, self.validated = None, {}, {}

    def on_train_start(self, trainer, pl_module):
        self.average = AveragedModel(pl_module.model.net, multi_avg_fn=get_ema_multi_avg_fn(DECAY), use_buffers=True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.average.update_parameters(pl_module.model.net)

    def on_train_epoch_end(self, trainer, pl_module):
        self.at_epoch_end[trainer.current_epoch] = _copy(self.average.module.state_dict())

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if batch_idx == 0:
            self.validated[trainer.current_epoch] = _copy(pl_module.model.net.state_dict())


def _copy(state: dict) -> dict:
    return {k: v.detach().clone() for k, v in state.items()}


def _close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        if a[name].is_floating_point():  # BatchNorm's step count is no weight: nothing reads it (momentum is set)
            torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=0, msg=name)


def _net(state_dict: dict) -> dict:
    prefix = "model.net."
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


@pytest.fixture(scope="module")
def averaged(tmp_path_factory, bars):
    reference, out = Reference(), tmp_path_factory.mktemp("ema") / "run"
    cnnlab.train(bars, out, ema=DECAY, callbacks=[reference], **SETTINGS)
    return out, reference


def test_the_average_is_torchs_averaged_model_over_the_same_steps(averaged):
    out, reference = averaged
    last = files.load_torch(rundir.checkpoint(out))
    _close(_net(last["state_dict"]), reference.at_epoch_end[SETTINGS["epochs"] - 1])
    # the training weights travel beside it, and are not the average
    trained = _net(last["current_model_state"])
    assert max(float((trained[k] - v).abs().max()) for k, v in reference.at_epoch_end[2].items()
               if v.is_floating_point()) > 1e-3
    assert int(last["averaging_state"]["n_averaged"]) == last["global_step"]


def test_validation_the_best_checkpoint_and_the_saved_weights_are_the_average(averaged):
    out, reference = averaged
    for epoch, weights in reference.validated.items():
        _close(weights, reference.at_epoch_end[epoch])
    best = files.load_torch(rundir.checkpoint(out, rundir.BEST))
    _close(_net(best["state_dict"]), reference.at_epoch_end[best["epoch"]])
    _close(load_file(out / rundir.WEIGHTS), reference.at_epoch_end[best["epoch"]])


def test_off_by_default_and_zero_is_today_s_run_bit_for_bit(tmp_path, bars, averaged):
    settings = {**SETTINGS, "epochs": 2}
    cnnlab.train(bars, tmp_path / "default", **settings)
    cnnlab.train(bars, tmp_path / "zero", ema=0, **settings)
    cnnlab.train(bars, tmp_path / "on", ema=DECAY, **settings)
    weights = {name: tensors_sha256(tmp_path / name / rundir.WEIGHTS) for name in ("default", "zero", "on")}
    assert weights["default"] == weights["zero"] != weights["on"]
    assert rundir.load_run_config(tmp_path / "default").optim.ema == 0.0
    ckpt = files.load_torch(rundir.checkpoint(tmp_path / "default"))
    assert "current_model_state" not in ckpt and "WeightEMA" not in ckpt["callbacks"]


@pytest.mark.parametrize("value", ["1.5", "-0.1", "1"])
def test_a_decay_outside_0_1_is_one_line_and_nothing_written(tmp_path, bars, value):
    proc = invoke("train", bars, "--out", tmp_path / "r", "--ema", value)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "optim.ema" in errors[0] and "[0, 1)" in errors[0], proc.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_a_run_killed_mid_epoch_and_resumed_continues_the_average_bit_for_bit(tmp_path, bars, averaged):
    reference, _ = averaged
    out = tmp_path / "run"
    proc = killed_in_fork_then_resumed(bars, out, 1, 2, {**SETTINGS, "ema": DECAY})
    assert proc.returncode == 0, proc.stderr[-2000:]
    # an average restarted from the training weights at the resume gives other weights and other val figures
    assert tensors_sha256(out / rundir.WEIGHTS) == tensors_sha256(reference / rundir.WEIGHTS)

    def rows(run):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rundir.read_csv(run / rundir.METRICS)]

    assert rows(out) == rows(reference) and len(rows(out)) == SETTINGS["epochs"]


@pytest.mark.slow
@pytest.mark.xdist_group("ddp")  # each process of the run takes a core
def test_two_ddp_processes_validate_and_save_one_average(tmp_path):

    export("digits", tmp_path / "digits")
    data = tmp_path / "digits" / "train"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "cnnlab", "train", str(data), "--out", str(tmp_path / "run"),
                           "--accelerator", "cpu", "--devices", "2", "--distributed", "ddp", "--epochs", "3",
                           "--batch-size", "32", "--test-split", "0", "--progress", "false", "--ema", "0.9"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    info = rundir.read_training(run)
    last = files.load_torch(rundir.checkpoint(run))
    assert int(last["averaging_state"]["n_averaged"]) == last["global_step"] > 0
    # what validation scored is what was saved: the best epoch's val_acc is the saved weights' accuracy
    row = rundir.read_csv(run / rundir.METRICS)[info.best_epoch]
    assert float(row["val_acc"]) == pytest.approx(cnnlab.evaluate(run, data, split="val")["accuracy"], abs=1e-5)
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]


def test_resume_with_another_decay_is_refused_in_one_line(tmp_path, bars):
    out = tmp_path / "run"
    cnnlab.train(bars, out, **{**SETTINGS, "epochs": 1, "ema": DECAY})
    (out / rundir.TRAINING).unlink()  # as if killed after its first checkpoint
    for value in ("0", "0.99"):
        proc = invoke("train", "--resume", "--out", out, "--ema", value)
        assert proc.returncode != 0 and "--ema 0.9" in proc.stderr and "leave out --ema" in proc.stderr, proc.stderr
        assert len([line for line in proc.stderr.splitlines() if line.strip()]) == 1
