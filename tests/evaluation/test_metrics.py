import json

import numpy as np
import pytest
from sklearn import metrics as skm

import cnnlab
from cnnlab import rundir
from cnnlab.errors import CnnlabError
from cnnlab.evaluation.metrics import classification_metrics
from conftest import write_images


def test_metrics_agree_with_scikit_learn_on_the_same_predictions():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    probs = rng.random((200, 4))
    probs[np.arange(200), y] += rng.random(200)  # better than chance, not perfect
    probs /= probs.sum(1, keepdims=True)
    pred = probs.argmax(1)
    m = classification_metrics(y, probs, ["w", "x", "y", "z"])
    assert m.accuracy == pytest.approx(skm.accuracy_score(y, pred))
    for avg in ("macro", "weighted", "micro"):
        precision, recall, f1 = m.averages(avg)
        assert f1 == pytest.approx(skm.f1_score(y, pred, average=avg))
        assert precision == pytest.approx(skm.precision_score(y, pred, average=avg))
        assert recall == pytest.approx(skm.recall_score(y, pred, average=avg))
    assert m.per_class["x"].recall == pytest.approx(np.mean(pred[y == 1] == 1))
    assert m.per_class["z"].support == int((y == 3).sum())
    cm = np.array(m.confusion_matrix)
    assert cm[1, 2] == int(((y == 1) & (pred == 2)).sum())  # rows = true, columns = predicted
    assert m.top_k_accuracy["2"] == pytest.approx(skm.top_k_accuracy_score(y, probs, k=2))


def test_evaluate_run_json_contract_and_plots(tiny_run, bars, tmp_path):
    result = cnnlab.evaluate(tiny_run, bars, json_path=tmp_path / "m.json")
    saved = json.loads((tmp_path / "m.json").read_text())
    keys = {"classes", "accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_weighted",
            "recall_weighted", "f1_weighted", "precision_micro", "recall_micro", "f1_micro", "per_class",
            "confusion_matrix"}
    assert keys <= set(saved)
    # the run's own data: only its 6 held-out test images (split.csv), never the 48 it trained on nor the 6
    # validation images that chose its epoch
    held_out = [r for r in rundir.read_csv(tiny_run / rundir.SPLIT) if r["split"] == "test"]
    assert saved["split"] == "test" and np.array(saved["confusion_matrix"]).sum() == len(held_out) == 6
    assert saved["split_note"] is None
    assert saved["classes"] == ["a", "b", "c"]
    assert set(saved["per_class"]["a"]) == {"precision", "recall", "f1", "support"}
    assert saved == json.loads(json.dumps(result))
    assert (tiny_run / "confusion_matrix.png").stat().st_size > 1000


def test_evaluate_agrees_with_predict(tiny_run, bars):
    result = cnnlab.evaluate(tiny_run, bars, split="all")
    files = sorted(bars.rglob("*.png"))
    preds = cnnlab.load(tiny_run).predict(files)
    correct = sum(p.label == f.parent.name for p, f in zip(preds, files))
    assert result["accuracy"] == pytest.approx(correct / len(files))


def test_unknown_classes_in_the_test_data_are_an_error(tiny_run, tmp_path):
    data = write_images(tmp_path / "d", {"a": 2, "zebra": 2})
    with pytest.raises(CnnlabError, match="classes the model was not trained on: zebra"):
        cnnlab.evaluate(tiny_run, data)
