"""Experiment tracking through Lightning's loggers: TensorBoard and an offline MLflow store under the run."""
from __future__ import annotations

import importlib.util

import pytest

import cnnlab
from cnnlab.catalog import loggers
from cnnlab.errors import ConfigError
from conftest import TINY, invoke


def test_tensorboard_gets_the_curves_the_learning_rate_and_the_gradient_norms(bars, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = cnnlab.train(bars, tmp_path / "run", epochs=2, batch_size=8, logger="tensorboard", gradient_every=2, **TINY)
    events = list((result.run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file"
    acc = EventAccumulator(str(events[0].parent)).Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train_loss", "train_acc", "val_loss", "val_acc"} <= tags
    assert any(t.startswith("lr-") for t in tags)
    assert any(t.startswith("gradient_norm/") for t in tags)
    assert len(acc.Scalars("val_loss")) == 2  # one point an epoch
    assert (result.run_dir / "metrics.csv").is_file()  # still written, as before


def test_mlflow_logs_to_a_file_store_under_the_run_offline(bars, tmp_path):
    from mlflow.tracking import MlflowClient

    result = cnnlab.train(bars, tmp_path / "run", epochs=2, batch_size=8, logger="mlflow", **TINY)
    store = result.run_dir / "mlruns"
    client = MlflowClient(tracking_uri=store.resolve().as_uri())
    experiment = client.get_experiment_by_name("cnnlab")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].info.run_name == "run"
    history = client.get_metric_history(runs[0].info.run_id, "val_loss")
    assert len(history) == 2
    assert runs[0].data.metrics["val_acc"] >= 0


def _one_line(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    return lines[0]


def test_an_unknown_logger_lists_the_valid_ones(bars, tmp_path):
    proc = invoke("train", bars, "--out", tmp_path / "r", "--logger", "neptune")
    line = _one_line(proc)
    assert "unknown logger 'neptune'" in line and "csv, mlflow, tensorboard, wandb" in line
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_a_missing_wandb_names_its_install_command(bars, tmp_path):
    proc = invoke("train", bars, "--out", tmp_path / "r", "--logger", "wandb")
    assert "pip install wandb" in _one_line(proc)
    assert not (tmp_path / "r").exists()


def test_a_missing_mlflow_names_its_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(loggers.importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ConfigError, match=r"needs the mlflow package.*pip install mlflow-skinny"):
        loggers.check_installed("mlflow")
    loggers.check_installed("csv")  # nothing to install
