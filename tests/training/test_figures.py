"""The training figures a person reads (#22 §1.5): epochs counted from 1 wherever a person reads them
(messages, the report) while metrics.csv keeps 0 and says so, and one training time, the whole one, in
training.json, the report and the server's /model."""
import json
import re
import shutil

import pytest
from lightning.pytorch.callbacks import Callback

import cnnlab
from cnnlab import files, rundir
from cnnlab.errors import Diverged, Interrupted
from conftest import TINY


class CtrlC(Callback):
    """Ctrl-C at the first step of the second epoch (Lightning's epoch 1)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == 1:
            raise KeyboardInterrupt


def test_an_interruption_names_the_epoch_counting_from_1(tmp_path, bars):
    out = tmp_path / "run"
    with pytest.raises(Interrupted) as caught:
        cnnlab.train(bars, out, epochs=3, callbacks=[CtrlC()], **TINY)
    assert files.load_torch(rundir.checkpoint(out))["epoch"] == 0  # Lightning's count: one epoch done
    assert f"interrupted in epoch 2; its checkpoint keeps the first 1 epoch; continue with: cnnlab train --resume " \
           f"--out {out}" == str(caught.value)


def test_divergence_names_the_epochs_counting_from_1(tmp_path, bars):
    with pytest.raises(Diverged) as caught:
        cnnlab.train(bars, tmp_path / "run", optimizer="sgd", lr=1e6, epochs=3, **TINY)
    message = str(caught.value)
    found = re.match(r"training diverged in epoch (\d+), step (\d+):", message)
    # one step an epoch (48 training images, batches of 64): Lightning's step, from 0, is the epoch from 0
    assert found and int(found[1]) == int(found[2]) + 1
    best = json.loads((tmp_path / "run" / rundir.TRAINING).read_text())["best_epoch"]
    assert best is None or f"the weights of epoch {best + 1}, the best before it" in message


def test_the_report_counts_epochs_from_1_as_metrics_csv_says_it_does_not(tiny_run):
    from cnnlab.evaluation.report import build_report

    info = json.loads((tiny_run / rundir.TRAINING).read_text())
    assert [int(r["epoch"]) for r in rundir.read_csv(tiny_run / rundir.METRICS)] == [0, 1, 2]
    page = build_report(tiny_run).read_text()
    assert f"best epoch {info['best_epoch'] + 1} of 3 (counting from 1)" in page
    assert f"<span>training time</span><b>{info['seconds']} s</b>" in page


def test_model_training_seconds_is_the_whole_training_time(tiny_run, tmp_path):
    from fastapi.testclient import TestClient

    from cnnlab.serving.app import create_app

    info = json.loads((tiny_run / rundir.TRAINING).read_text())
    epochs = [float(r["seconds"]) for r in rundir.read_csv(tiny_run / rundir.METRICS)]
    assert "seconds" not in info["final"] and info["seconds"] >= sum(epochs) > epochs[-1]
    seconds = TestClient(create_app(str(tiny_run)), base_url="http://localhost").get("/model").json()["training"]["seconds"]
    assert seconds == info["seconds"]
    # a run from before: its final figures held the last epoch's time
    old = shutil.copytree(tiny_run, tmp_path / "old")
    files.write_json(old / rundir.TRAINING, {**info, "final": {**info["final"], "seconds": epochs[-1]}})
    assert TestClient(create_app(str(old)), base_url="http://localhost").get("/model").json()["training"]["seconds"] == info["seconds"]
