"""Figures that do not mislead (#22 §1.1, §1.2), through the CLI: a temperature is never fitted to sharpen a
model that is always right on its validation split, a plain folder gets a seeded, stratified test split,
and a headline on validation images says so in words (evaluate, evaluation.json, the report, /model).
The commands run in this process, through the console script's ``main()``."""
import json
import shutil
from collections import Counter

import pytest
import torch

import cnnlab
from cnnlab import files, rundir
from cnnlab.calibration import fit_temperature
from conftest import TINY, invoke, write_images

TINY_FLAGS = ["--blocks", "[{filters: 4}, {filters: 8}]", "--dense", "16", "--dropout", "0", "--augment", "none",
              "--progress", "false", "--lr", "0.01", "--batch-size", "16"]


def cli(*args, check=True):
    return invoke(*args, check=check)


def split_rows(run) -> list[dict]:
    return rundir.read_csv(run / rundir.SPLIT)


def val_logits(run) -> tuple[torch.Tensor, torch.Tensor]:
    predictor = cnnlab.load(run, "cpu")
    rows = [r for r in split_rows(run) if r["split"] == "val"]
    x = torch.stack([predictor.preprocess(r["path"]) for r in rows])
    return predictor.raw(x), torch.tensor([predictor.classes.index(r["label"]) for r in rows])


# ----------------------------------------------------------------------------- calibration
@pytest.mark.slow
def test_a_perfectly_classified_validation_split_gets_no_sharpening_temperature(tmp_path):
    data = write_images(tmp_path / "bars", {"a": 80, "b": 80, "c": 80})
    run = tmp_path / "run"
    proc = cli("train", data, "--out", run, "--epochs", "4", "--val-split", "0.25", *TINY_FLAGS)
    record = json.loads((run / rundir.CALIBRATION).read_text())
    logits, labels = val_logits(run)
    # the premise: 60 validation images, every one right, so the NLL alone asks for T < 1 (before #22: kept)
    assert record["n"] == len(labels) == 60 and record["errors"] == 0 and bool((logits.argmax(1) == labels).all())
    assert fit_temperature(logits, labels, (1e-3, 1e3)) < 0.5
    assert record["kept"] is False and record["temperature"] == 1.0
    notes = [line for line in proc.stderr.splitlines() if line.startswith("calibration:")]
    assert len(notes) == 1 and "no temperature" in notes[0] and "no mistakes on the 60 validation images" in notes[0]
    predictor = cnnlab.load(run, "cpu")
    x = torch.stack([predictor.preprocess(r["path"]) for r in split_rows(run)[:8]])
    assert torch.allclose(predictor.forward(x), predictor.raw(x).softmax(1), atol=1e-6)  # T = 1: as trained


@pytest.fixture(scope="module")
def val_headline(tmp_path_factory):
    """A run with --test-split 0 (its headline on validation images), evaluated."""
    root = tmp_path_factory.mktemp("val-headline")
    data = write_images(root / "bars", {"a": 20, "b": 20, "c": 20})
    train = cli("train", data, "--out", root / "run", "--epochs", "2", "--test-split", "0", *TINY_FLAGS)
    evaluate = cli("evaluate", root / "run", data, "--json", root / "m.json")
    return root, data, train, evaluate


@pytest.mark.slow
def test_a_headline_on_validation_images_says_they_selected_the_model(val_headline):
    root, data, train, evaluate = val_headline
    assert not [r for r in split_rows(root / "run") if r["split"] == "test"]
    assert "no test images" in train.stderr and "also select the model" in train.stderr
    best = json.loads((root / "run" / rundir.TRAINING).read_text())["best_epoch"]  # metrics.csv's count, from 0
    assert f"holds the best epoch: epoch {best + 1} of 2 (epoch {best} in metrics.csv, which counts from 0)" in \
        " ".join(train.stderr.split())
    assert "evaluation on 6 validation images" in evaluate.stdout and "held-out" not in evaluate.stdout
    assert "which also selected the model" in " ".join(evaluate.stdout.split())
    for result in (json.loads((root / "m.json").read_text()), json.loads((root / "run" / rundir.EVALUATION).read_text())):
        assert result["split"] == "val" and "which also selected the model" in result["split_note"]
    from cnnlab.evaluation.report import build_report

    page = build_report(root / "run").read_text()
    assert 'id="split-note"' in page and "validation images, which also selected the model" in page
    from fastapi.testclient import TestClient
    from cnnlab.serving.app import create_app

    info = TestClient(create_app(str(root / "run")), base_url="http://localhost").get("/model").json()
    assert info["evaluated_on"] == "val" and "which also selected the model" in info["note"]


@pytest.mark.slow
def test_the_ece_shown_for_validation_images_is_the_out_of_fold_one(val_headline, tmp_path):
    """The run's own validation images fitted its temperature: evaluate and the report show the ECE measured
    on the folds that did not fit it (calibration.json's), and say why."""
    root, data, _, _ = val_headline
    run = shutil.copytree(root / "run", tmp_path / "run")
    oof = {"ece_before": 0.0811, "ece_after": 0.0234, "nll_before": 0.4, "nll_after": 0.3}
    files.write_json(run / rundir.CALIBRATION, {"kept": True, "temperature": 1.7, "split": "val", "n": 6,
                                                "folds": 5, "bounds": [1.0, 10.0], "out_of_fold": oof})
    proc = cli("evaluate", run, data, "--json", tmp_path / "m.json")
    cal = json.loads((tmp_path / "m.json").read_text())["calibration"]
    assert cal["fitted_on_these_images"] is True and cal["out_of_fold"] == oof and cal["temperature"] == 1.7
    assert "on the images that fitted it; out-of-fold (not fitted on): 0.0811 -> 0.0234" in " ".join(proc.stdout.split())
    from cnnlab.evaluation.report import build_report

    page = build_report(run, data).read_text()
    assert "ECE (calibrated, out-of-fold)</span><b>0.0234</b>" in page


def test_evaluate_measures_the_ece_on_test_images_the_temperature_never_saw(tmp_path, tiny_run, bars):
    run = shutil.copytree(tiny_run, tmp_path / "run")  # the plain folder's default split: 6 test images
    files.write_json(run / rundir.CALIBRATION, {"kept": True, "temperature": 1.7, "split": "val", "n": 6})
    result = cnnlab.evaluate(run, bars)
    assert result["split"] == "test" and result["split_note"] is None
    assert result["calibration"]["fitted_on_these_images"] is False
    test = [r for r in split_rows(run) if r["split"] == "test"]
    predictor = cnnlab.load(run, "cpu")
    probs = predictor.outputs(predictor.preprocess(r["path"]) for r in test)
    labels = torch.tensor([predictor.classes.index(r["label"]) for r in test])
    from cnnlab.calibration import ece

    assert result["n"] == len(test) == 6 and result["calibration"]["ece_after"] == pytest.approx(ece(probs, labels))


# ----------------------------------------------------------------------------- the default test split
@pytest.mark.slow
def test_a_plain_folder_gets_a_seeded_stratified_test_split(tmp_path):
    data = write_images(tmp_path / "bars", {"a": 40, "b": 20, "c": 10})
    cli("train", data, "--out", tmp_path / "r1", "--epochs", "1", *TINY_FLAGS)
    for name, seed in (("r2", 0), ("r3", 1)):  # the same path in-process, faster
        cnnlab.train(data, tmp_path / name, epochs=1, seed=seed, **TINY)
    rows = split_rows(tmp_path / "r1")
    assert len(rows) == 70
    assert Counter(r["label"] for r in rows if r["split"] == "test") == {"a": 4, "b": 2, "c": 1}  # 10% of each
    assert Counter(r["label"] for r in rows if r["split"] == "val") == {"a": 4, "b": 2, "c": 1}
    assert split_rows(tmp_path / "r2") == rows
    assert split_rows(tmp_path / "r3") != rows and len(split_rows(tmp_path / "r3")) == 70
    result = cnnlab.evaluate(tmp_path / "r1", data)
    assert result["split"] == "test" and result["n"] == 7 and result["split_note"] is None


@pytest.mark.slow
def test_a_class_of_one_image_trains_and_stays_in_training(tmp_path):
    data = write_images(tmp_path / "d", {"a": 20, "b": 20, "c": 1})
    proc = cli("train", data, "--out", tmp_path / "run", "--epochs", "1", *TINY_FLAGS, check=False)
    assert proc.returncode == 0, proc.stderr
    rows = split_rows(tmp_path / "run")
    assert len(rows) == 41 and [r["split"] for r in rows if r["label"] == "c"] == ["train"]
    assert Counter(r["label"] for r in rows if r["split"] == "test") == {"a": 2, "b": 2}
    assert "too few images for every held-out split (c: no test or val image)" in " ".join(proc.stderr.split())


@pytest.mark.parametrize("counts", [{"a": 2, "b": 2}, {"a": 3, "b": 1}, {"a": 1, "b": 1}])
def test_tiny_folders_train_and_keep_every_class_in_training(tmp_path, counts):
    data = write_images(tmp_path / "d", counts)
    cnnlab.train(data, tmp_path / "run", epochs=1, **TINY)
    rows = split_rows(tmp_path / "run")
    assert len(rows) == sum(counts.values())
    assert {r["label"] for r in rows if r["split"] == "train"} == set(counts)
