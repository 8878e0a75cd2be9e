"""The default recipe, class imbalance, calibration, the LR finder and target standardisation."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn
from sklearn.metrics import balanced_accuracy_score
from sklearn.utils.class_weight import compute_class_weight

import cnnlab
from cnnlab import files, rundir
from cnnlab.config import Config, with_overrides
from cnnlab.data.datamodule import EpochBatches, balanced_weights, inverse_frequency
from cnnlab.calibration import ece, fit_temperature, uncalibrated
from cnnlab.training.plan import resolve_epochs, resolve_recipe
from cnnlab.training.lr_find import valley
from conftest import TINY, invoke, write_images


# The CLI in this process: none of these tests is about the process itself, and each new interpreter
# spent seconds importing torch before it reached the line under test.
cli = invoke


# ----------------------------------------------------------------------------- the default recipe
def test_the_defaults_are_the_demo_recipe_made_explicit_for_the_model():
    scratch = resolve_recipe(with_overrides(Config(), {}))
    assert (scratch.optim.lr, scratch.optim.schedule, scratch.augment.preset) == (0.003, "onecycle", "light")
    from cnnlab.data.augment_batches import resolved

    assert "hflip" not in resolved(scratch.augment)  # light never flips: digits and text stay readable
    backbone = resolve_recipe(with_overrides(Config(), {"model": "resnet18"}))
    assert (backbone.optim.lr, backbone.augment.preset) == (0.001, "none")
    mine = resolve_recipe(with_overrides(Config(), {"lr": 0.02, "augment": "standard"}))
    assert (mine.optim.lr, mine.augment.preset) == (0.02, "standard")


def test_label_smoothing_is_on_from_scratch_for_classes_and_off_for_backbones_and_values():
    def smoothing(**overrides):
        return resolve_recipe(with_overrides(Config(), overrides)).optim.label_smoothing

    assert smoothing() == 0.1
    assert smoothing(model="resnet18") == 0.0  # pretrained backbones were not measured with it
    assert smoothing(task="regression") == 0.0  # a value has no classes to spread over
    assert smoothing(label_smoothing=0.0) == 0.0 and smoothing(model="resnet18", label_smoothing=0.2) == 0.2


def test_the_training_loss_is_smoothed_and_the_validation_loss_is_the_plain_likelihood():
    from cnnlab.training.module import ImageTask

    cfg = resolve_recipe(with_overrides(Config(), {"lr": 0.01}))
    module = ImageTask(nn.Linear(4, 3), "classification", 3, cfg.optim, class_weights=torch.tensor([1.0, 2.0, 0.5]))
    out, y = torch.randn(8, 3, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    # the reference: targets (1 - eps) on the class plus eps / K on every class, each image weighed by its class
    eps, w = 0.1, module.loss_fn.weight
    target = torch.full((8, 3), eps / 3).scatter_add_(1, y[:, None], torch.full((8, 1), 1 - eps))
    per_image = -(target * w * out.log_softmax(1)).sum(1)
    assert torch.allclose(module._loss(out, y, "train"), per_image.sum() / w[y].sum())
    assert torch.allclose(module._loss(out, y, "val"), nn.functional.cross_entropy(out, y, weight=w))
    assert module._loss(out, y, "train") > module._loss(out, y, "val")  # not the same number twice


def test_label_smoothing_with_regression_is_one_line_and_exit_2(tmp_path):
    proc = cli("train", tmp_path, "--task", "regression", "--label-smoothing", "0.1")
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "label_smoothing" in lines[0] and "regression" in lines[0]


@pytest.mark.parametrize("task,n_train,batch,mode,epochs", [
    ("classification", 3600, 64, "minibatch", 16), ("classification", 100, 64, "minibatch", 30),
    ("classification", 500_000, 64, "minibatch", 5), ("classification", 3600, 64, "batch", 30),
    ("regression", 1293, 64, "minibatch", 76), ("regression", 100, 64, "minibatch", 80)])
def test_the_default_epoch_count_aims_at_a_number_of_steps(task, n_train, batch, mode, epochs):
    cfg = with_overrides(Config(), {"batch_size": batch, "mode": mode, "task": task})
    assert resolve_epochs(cfg, n_train).train.epochs == epochs
    assert resolve_epochs(with_overrides(cfg, {"epochs": 3}), n_train).train.epochs == 3


# ----------------------------------------------------------------------------- class imbalance
def test_class_weights_auto_are_scikit_learns_balanced_weights():
    y = torch.tensor([0] * 30 + [1] * 6 + [2] * 3)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=y.numpy())
    assert torch.allclose(inverse_frequency(y, 3), torch.tensor(expected, dtype=torch.float32))


def test_the_balanced_sampler_draws_every_class_about_equally_often():
    y = torch.tensor([0] * 900 + [1] * 100)
    sampler = EpochBatches(len(y), 100, seed=0, weights=balanced_weights(y))
    drawn = torch.tensor([i for epoch in range(3) for batch in (sampler.set_epoch(epoch) or sampler) for i in batch])
    share = float((y[drawn] == 1).float().mean())
    assert len(drawn) == 3000 and 0.45 < share < 0.55  # the plain order would give 0.10


@pytest.fixture(scope="module")
def skewed(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp("skewed"), {"a": 30, "b": 6, "c": 6})


def test_training_with_class_weights_puts_them_in_the_loss(skewed, tmp_path):
    result = cnnlab.train(skewed, tmp_path / "run", epochs=1, batch_size=16, class_weights="auto", sampler="balanced",
                          **TINY)
    state = files.load_torch(rundir.checkpoint(result.run_dir, rundir.LAST))["state_dict"]
    split = rundir.Run.open(result.run_dir).split()
    y = [["a", "b", "c"].index(r["label"]) for r in split if r["split"] == "train"]
    expected = compute_class_weight("balanced", classes=np.arange(3), y=np.array(y))
    assert np.allclose(state["loss_fn.weight"].numpy(), expected, rtol=1e-5)
    cfg = rundir.load_run_config(result.run_dir)
    assert (cfg.optim.class_weights, cfg.data.sampler) == ("auto", "balanced")


def test_class_weights_with_regression_is_one_line_and_exit_2(tmp_path):
    proc = cli("train", tmp_path, "--task", "regression", "--class-weights", "auto")
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "class_weights" in lines[0] and "regression" in lines[0]


# ----------------------------------------------------------------------------- calibration
def test_temperature_scaling_recovers_a_known_temperature_and_lowers_the_ece():
    torch.manual_seed(0)
    logits = torch.randn(4000, 5) * 4
    labels = torch.distributions.Categorical(logits=logits / 3.0).sample()  # the truth is T = 3
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(3.0, abs=0.25)
    assert ece((logits / t).softmax(1), labels) < ece(logits.softmax(1), labels) / 3
    assert torch.allclose(uncalibrated((logits / t).softmax(1), t), logits.softmax(1), atol=1e-5)


def test_ece_is_the_weighted_gap_between_confidence_and_accuracy():
    rng = np.random.default_rng(1)
    probs = torch.tensor(rng.dirichlet(np.ones(4) * 0.5, 600), dtype=torch.float32)
    labels = torch.tensor(rng.integers(0, 4, 600))
    conf, pred = probs.max(1)
    edges = np.linspace(0, 1, 16)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            total += float(m.float().mean()) * abs(float(conf[m].mean()) - float((pred[m] == labels[m]).float().mean()))
    assert ece(probs, labels) == pytest.approx(total, abs=1e-5)


def test_a_run_records_its_calibration_and_predicts_with_its_temperature(tiny_run, bars, tmp_path):
    cal = json.loads((tiny_run / rundir.CALIBRATION).read_text())
    # 6 validation images: too few to fit a temperature and check it; the decision is recorded, T = 1
    assert cal["split"] == "val" and cal["n"] == 6 and cal["kept"] is False and cal["temperature"] == 1.0
    assert "too few" in cal["reason"]
    run = shutil.copytree(tiny_run, tmp_path / "run")
    x = torch.stack([cnnlab.load(run).preprocess(p) for p in sorted(bars.rglob("*.png"))[:8]])
    old_style = {"method": "temperature scaling", "temperature": 2.5, "split": "val", "n": 6}  # before "kept"
    for record in ({**cal, "kept": True, "temperature": 2.5}, old_style):
        files.write_json(run / rundir.CALIBRATION, record)
        predictor = cnnlab.load(run, "cpu")
        assert torch.allclose(predictor.forward(x), (predictor.raw(x) / 2.5).softmax(1), atol=1e-6)


def test_evaluate_reports_balanced_accuracy_and_calibration_before_and_after(tiny_run, bars, tmp_path):
    out = tmp_path / "eval.json"
    proc = cli("evaluate", tiny_run, bars, "--split", "all", "--json", out)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    cm = np.array(result["confusion_matrix"])
    per_class_recall = cm.diagonal() / cm.sum(1)
    assert result["balanced_accuracy"] == pytest.approx(float(per_class_recall.mean()))
    y = np.repeat(np.arange(len(cm)), cm.sum(1))
    pred = np.concatenate([np.repeat(np.arange(len(cm)), row) for row in cm])
    assert result["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    cal = result["calibration"]
    assert set(cal) >= {"temperature", "ece_before", "ece_after", "reliability"} and len(cal["reliability"]) == 15
    assert cal["temperature"] == pytest.approx(json.loads((tiny_run / rundir.CALIBRATION).read_text())["temperature"])
    assert "balanced accuracy" in proc.stdout and "ECE" in proc.stdout


# ----------------------------------------------------------------------------- abstention
@pytest.fixture(scope="module")
def unsure_run(tmp_path_factory, bars):
    """Barely trained: its probabilities spread over (0, 1)."""
    out = tmp_path_factory.mktemp("unsure") / "run"
    cnnlab.train(bars, out, epochs=1, lr=1e-4, batch_size=16, calibrate=False, **TINY)
    return out


def test_predict_threshold_marks_unsure_predictions_without_a_label(unsure_run, bars):
    tiny_run = unsure_run
    sure = json.loads(cli("predict", tiny_run, bars, "--json").stdout)
    assert all(p["label"] is not None and p["uncertain"] is False for p in sure)
    threshold = float(np.median([p["probability"] for p in sure]))
    assert 0 < threshold < 1
    proc = cli("predict", tiny_run, bars, "--threshold", threshold, "--json")
    assert proc.returncode == 0, proc.stderr
    preds = json.loads(proc.stdout)
    for before, after in zip(sure, preds):
        assert after["uncertain"] == (before["probability"] < threshold)
        assert after["label"] == (None if after["uncertain"] else before["label"])
        assert after["top_k"] == before["top_k"]  # still listed
    assert any(p["uncertain"] for p in preds) and not all(p["uncertain"] for p in preds)


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.2"])
def test_a_threshold_outside_0_1_is_one_line_and_exit_2(tiny_run, bars, value):
    proc = cli("predict", tiny_run, bars / "a", "--threshold", value)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "between 0 and 1" in lines[0]


# ----------------------------------------------------------------------------- LR finder
def test_the_valley_rule_picks_a_rate_inside_the_longest_descent():
    lrs = list(np.logspace(-6, 0, 100))
    losses = [2.3] * 30 + list(np.linspace(2.3, 0.5, 55)) + list(np.linspace(0.5, 4, 15))
    lr = valley(lrs, losses)
    assert lrs[30] < lr < lrs[84]
    assert lrs.index(lr) == 29 + 18 + 9  # start + a third + a sixth of the 55-point valley


def test_lr_find_writes_the_plot_and_prints_the_suggestion(bars, tmp_path):
    png = tmp_path / "lr.png"
    proc = cli("lr-find", bars, "--out", png, "--batch-size", "8", "--blocks", "[{filters: 4}]", "--dense", "[8]")
    assert proc.returncode == 0, proc.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lr = float(proc.stdout.split("suggested learning rate:")[1].split()[0])
    assert 1e-6 <= lr <= 1.0
    # Not a terminal: no progress bar redrawn into the log, and no word of a --lr auto nobody gave.
    assert "\r" not in proc.stderr and "Finding best initial lr" not in proc.stderr, proc.stderr
    assert "--lr auto" not in proc.stderr + proc.stdout


def test_train_lr_auto_records_the_chosen_rate_in_the_run(bars, tmp_path):
    result = cnnlab.train(bars, tmp_path / "run", epochs=1, batch_size=8, lr="auto", **TINY)
    cfg = rundir.load_run_config(result.run_dir)
    found = json.loads((result.run_dir / "lr_find.json").read_text())
    assert isinstance(cfg.optim.lr, float) and cfg.optim.lr == pytest.approx(found["suggestion"])
    assert len(found["lr"]) == len(found["loss"]) > 10
    assert (result.run_dir / "lr_find.png").is_file()


def test_lr_find_plot_marks_the_rate_it_suggests(bars, tmp_path, monkeypatch):
    """The marker is read from the figure that is saved, not from its title (Lightning's own plot marks
    its steepest-point rule, another rate)."""
    from matplotlib.figure import Figure

    saved, savefig = [], Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: (saved.append(fig), savefig(fig, *a, **k))[1])
    result = cnnlab.train(bars, tmp_path / "run", epochs=1, batch_size=8, lr="auto", **TINY)
    found = json.loads((result.run_dir / "lr_find.json").read_text())
    figs = [f for f in saved if "range test" in f.axes[0].get_title()]
    assert len(figs) == 1
    markers = [line for line in figs[0].axes[0].lines if line.get_marker() == "o"]
    assert len(markers) == 1
    x, y = markers[0].get_xdata()[0], markers[0].get_ydata()[0]
    assert x == pytest.approx(found["suggestion"])
    assert y == pytest.approx(found["loss"][found["lr"].index(found["suggestion"])])


def test_lr_find_on_data_that_cannot_train_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "only").mkdir()
    write_images(tmp_path / "one_class", {"a": 5})
    for data in (tmp_path / "missing", tmp_path / "one_class"):
        proc = cli("lr-find", data)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr


# ----------------------------------------------------------------------------- regression
def test_regression_targets_are_standardised_and_predictions_come_back_in_their_units(tmp_path):
    rng = np.random.default_rng(0)
    from PIL import Image

    rows = ["path,value"]
    for i in range(40):
        v = float(rng.uniform(100, 200))  # far from 0: raw MSE would start ~150^2 away
        level = int((v - 100) / 100 * 255)
        Image.fromarray(np.full((16, 16), level, dtype=np.uint8)).save(tmp_path / f"{i}.png")
        rows.append(f"{i}.png,{v}")
    (tmp_path / "targets.csv").write_text("\n".join(rows))
    result = cnnlab.train(tmp_path / "targets.csv", tmp_path / "run", task="regression", epochs=3, batch_size=8,
                          **TINY)
    pre = json.loads((result.run_dir / rundir.PREPROCESSING).read_text())
    split = rundir.Run.open(result.run_dir).split()
    train = np.array([float(r["label"]) for r in split if r["split"] == "train"])
    assert pre["target_mean"] == pytest.approx(train.mean(), rel=1e-5)
    assert pre["target_std"] == pytest.approx(train.std(ddof=1), rel=1e-4)
    pred = cnnlab.load(result.run_dir, "cpu").predict(str(tmp_path / "0.png"))[0].label
    assert 80 < pred < 220  # in the targets' units, not standardised ones
