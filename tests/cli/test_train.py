"""cli/train.py: train, lr-find, compare and demo hand their flags to the library and print what it returns.
The library is replaced by a recorder: these tests are about the command, not the training."""
from pathlib import Path

import pytest

from cnnlab.artifacts import Evaluation

from cnnlab import rundir
from cnnlab.training.fit import TrainResult
from cnnlab.workflows.compare import Entry


@pytest.fixture
def fit(record, tmp_path):
    import cnnlab.training.fit

    result = TrainResult(tmp_path / "run", seconds=12.34, epochs=3, best_epoch=1,
                         metrics={"train_loss": 0.5, "train_acc": 0.8, "val_acc": 0.75, "lr": 0.01})
    return record(cnnlab.training.fit, "train", result)


def test_flags_reach_train_typed(cli, fit, tmp_path):
    (tmp_path / "c.yaml").write_text("optim: {lr: 0.5}\n")
    found = cli("train", tmp_path / "data", "--out", tmp_path / "r", "-m", "lenet5", "--epochs", "3", "--lr", "0.01",
                "--dense", "16,8", "--optim.schedule", "cosine", "--config", tmp_path / "c.yaml", "--overwrite")
    assert found.code == 0, found.err
    assert fit.args == (tmp_path / "data", tmp_path / "r")
    assert fit.kwargs == {"config": tmp_path / "c.yaml", "resume": False, "overwrite": True, "model": "lenet5",
                          "epochs": 3, "lr": 0.01, "dense": [16, 8], "optim.schedule": "cosine"}


def test_resume_needs_no_data(cli, fit, tmp_path):
    found = cli("train", "--resume", "--out", tmp_path / "r")
    assert found.code == 0, found.err
    assert fit.args == (None, tmp_path / "r") and fit.kwargs["resume"] is True


def test_a_config_flag_first_is_not_taken_for_the_data(cli, fit, tmp_path):
    found = cli("train", "--lr", "0.1", "--resume", "--out", tmp_path / "r")
    assert found.code == 0, found.err
    assert fit.args == (None, tmp_path / "r") and fit.kwargs["lr"] == 0.1


@pytest.mark.parametrize("args,message", [
    ([], "missing DATA: cnnlab train DATA --out RUN (or --resume --out RUN)"),
    (["{data}", "--lrr", "0.1"], "unknown flag '--lrr'"),
    (["{data}", "--lr", "abc"], "optim.lr"),
    (["{data}", "--config", "{data}/missing.yaml"], "config file not found"),
])
def test_argument_errors_are_one_line_before_training(cli, fit, tmp_path, args, message):
    found = cli("train", *[a.format(data=tmp_path) for a in args])
    assert found.code == 2
    assert len(found.err_lines) == 1 and found.err_lines[0].startswith("error: ") and message in found.err
    assert fit.calls == []


def test_the_result_is_printed_in_words(cli, fit, tmp_path):
    found = cli("train", tmp_path / "data", "--out", tmp_path / "r")
    lines = [" ".join(line.split()) for line in found.err_lines]
    assert lines[-3:] == ["trained 3 epochs in 12.3s; last epoch: train_loss 0.5000, train_acc 0.8000, val_acc 0.7500",
                          "model.safetensors holds the best epoch: epoch 2 of 3 (epoch 1 in metrics.csv, which "
                          "counts from 0)",
                          f"run directory: {tmp_path / 'run'}"]
    assert found.out == ""


def test_no_best_epoch_line_without_a_best_epoch(cli, fit, tmp_path):
    fit.value.best_epoch = None
    found = cli("train", tmp_path / "data")
    assert found.code == 0 and "best epoch" not in found.err and "trained 3 epochs" in found.err


def test_only_the_leader_prints(cli, fit, tmp_path, monkeypatch):
    monkeypatch.setattr("cnnlab.training.distributed.is_leader", lambda: False)
    found = cli("train", tmp_path / "data", "--out", tmp_path / "r")
    assert found.code == 0 and len(fit.calls) == 1
    assert "trained" not in found.err and "run directory" not in found.err


# ----------------------------------------------------------------------------- lr-find
def test_lr_find_passes_its_flags_and_prints_the_suggestion(cli, record, tmp_path):
    import cnnlab.training.fit
    from cnnlab.cli.app import _command

    finder = record(cnnlab.training.fit, "find_learning_rate", (0.00123456, tmp_path / "lr.png"))
    found = cli("lr-find", tmp_path / "data", "-o", tmp_path / "lr.png", "--model", "lenet5", "--seed", "8")
    assert found.code == 0, found.err
    assert finder.args == (tmp_path / "data", tmp_path / "lr.png")
    assert finder.kwargs == {"config": None, "model": "lenet5", "seed": 8}
    assert found.out == "suggested learning rate: 0.00123\n"
    assert found.err_lines == [f"plot: {tmp_path / 'lr.png'}", f"next: {_command()} train {tmp_path / 'data'} --lr 0.00123"]


def test_lr_find_writes_lr_find_png_by_default(cli, record, tmp_path):
    import cnnlab.training.fit

    finder = record(cnnlab.training.fit, "find_learning_rate", (0.1, Path("lr_find.png")))
    assert cli("lr-find", tmp_path).code == 0
    assert finder.args == (tmp_path, Path("lr_find.png"))


# ----------------------------------------------------------------------------- compare
def test_compare_passes_models_budget_and_flags(cli, record, tmp_path):
    import cnnlab.workflows.compare

    entries = [Entry(model="cnn-small", accuracy=0.9, f1_macro=0.85, params=1234567, trained_params=1234567,
                     train_seconds=12.3, latency_ms=1.234, input="3x16x16", epochs="2", report="cnn-small/report.html"),
               Entry(model="lenet5", error="out of memory")]
    runner = record(cnnlab.workflows.compare, "compare", entries)
    found = cli("compare", tmp_path / "data", "--models", " cnn-small, lenet5,,", "--budget", "30", "--epochs", "2",
                "--lr", "0.1", "-o", tmp_path / "cmp")
    assert found.code == 0, found.err
    assert runner.args == (tmp_path / "data", ["cnn-small", "lenet5"], tmp_path / "cmp", 30.0)
    assert runner.kwargs == {"epochs": 2, "lr": 0.1}
    rows = [line for line in found.out.splitlines() if "cnn-small" in line or "lenet5" in line]
    assert len(rows) == 2  # the table's row, and the failure in words
    assert all(cell in rows[0] for cell in ("0.9000", "0.8500", "1,234,567", "12.3", "1.23", "3x16x16"))
    assert rows[1] == "lenet5: failed: out of memory"
    assert found.err_lines == [f"leaderboard: {tmp_path / 'cmp' / 'leaderboard.html'} (also .md, .csv)"]


def test_compare_needs_models(cli, record, tmp_path):
    import cnnlab.workflows.compare

    runner = record(cnnlab.workflows.compare, "compare", [])
    found = cli("compare", tmp_path)
    assert found.code == 2 and "--models" in found.err and runner.calls == []


# ----------------------------------------------------------------------------- demo
def test_demo_trains_evaluates_and_says_what_next(cli, record, tmp_path):
    from cnnlab.cli.app import _command
    from cnnlab.workflows import demo

    data = tmp_path / "demo" / "mnist-5k"
    result = TrainResult(tmp_path / "demo" / "run", seconds=30.0, epochs=5, best_epoch=None, metrics={"val_acc": 0.99})
    metrics = Evaluation.model_validate({"n": 10, "mae": 0.5, "rmse": 0.75, "r2": 0.125})
    runner = record(demo, "run", (data, result, metrics))
    found = cli("demo", "--dir", tmp_path / "demo", "--epochs", "4")
    assert found.code == 0, found.err
    assert runner.args == (tmp_path / "demo",) and runner.kwargs == {"epochs": 4}
    assert "trained 5 epochs in 30.0s; last epoch: val_acc 0.9900" in found.err
    assert found.out == "n=10  MAE 0.5000  RMSE 0.7500  R² 0.1250\n"
    assert found.err_lines[-2:] == [f"confusion matrix plot: {rundir.confusion_paths(result.run_dir)[0]}",
                                    f"next: {_command()} predict {result.run_dir} {data / 'test' / '7'} --top-k 3"]


def test_demo_leaves_the_epochs_to_the_data_size_by_default(cli, record, tmp_path):
    from cnnlab.workflows import demo

    result = TrainResult(tmp_path / "run", seconds=1.0, epochs=5, best_epoch=None)
    runner = record(demo, "run", (tmp_path, result, Evaluation.model_validate({"n": 1, "mae": 0.0, "rmse": 0.0, "r2": 1.0})))
    assert cli("demo", "--dir", tmp_path).code == 0
    assert runner.kwargs == {}
