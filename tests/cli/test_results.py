"""cli/results.py: evaluate, predict and report: the flags they hand on, the metrics table, and predictions as
a table, strictly valid JSON or CSV. predict runs the tiny trained run in this process."""
import csv
import json
import math

import pytest

from cnnlab import rundir
from cnnlab.cli import results

CLASSIFIED = {
    "n": 5, "split": "test", "classes": ["a", "b"], "accuracy": 0.6, "balanced_accuracy": 0.5,
    "per_class": {"a": {"precision": 0.75, "recall": 1.0, "f1": 0.857142, "support": 3},
                  "b": {"precision": None, "recall": 0.0, "f1": None, "support": 2}},
    **{f"{m}_{avg}": v for avg, v in (("macro", 0.25), ("weighted", 0.5), ("micro", 0.6))
       for m in ("precision", "recall", "f1")},
    "top_k_accuracy": {"2": 1.0}, "confusion_matrix": [[3, 0], [2, 0]],
}


def _cells(text: str, first: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.strip("│ ").startswith(first))
    return [cell.strip() for cell in line.split("│") if cell.strip()]


def _typed(result: dict):
    from cnnlab.artifacts import Evaluation

    return Evaluation.model_validate(result)


def test_print_metrics_tabulates_classes_averages_and_confusion(capsys):
    results.print_metrics(_typed(CLASSIFIED))
    text = capsys.readouterr().out
    assert "evaluation on 5 held-out test images" in text
    assert _cells(text, "a ") == ["a", "0.7500", "1.0000", "0.8571", "3"]
    assert _cells(text, "b ") == ["b", "n/a", "0.0000", "n/a", "2"]  # undefined, not 0
    assert _cells(text, "macro avg") == ["macro avg", "0.2500", "0.2500", "0.2500", "5"]
    assert _cells(text, "micro avg") == ["micro avg", "0.6000", "0.6000", "0.6000", "5"]
    assert "accuracy 0.6000  balanced accuracy 0.5000  top-2 1.0000" in text
    confusion = text[text.index("confusion matrix"):]
    assert _cells(confusion, "a ") == ["a", "3", "0"] and _cells(confusion, "b ") == ["b", "2", "0"]
    assert "calibration" not in text and "test-time" not in text and "note:" not in text


def test_print_metrics_adds_tta_and_the_split_note(capsys):
    results.print_metrics(_typed({**CLASSIFIED, "split": "all", "tta": ["identity", "hflip"],
                                  "split_note": "on [the] training images"}))
    text = capsys.readouterr().out
    assert "evaluation on 5 all images" in text
    assert "test-time augmentation: the mean over identity, hflip" in text
    assert "note: these figures are on [the] training images" in text  # the note's brackets are text, not markup


def test_print_metrics_of_a_regression_is_one_line(capsys):
    results.print_metrics(_typed({"n": 4, "mae": 0.25, "rmse": 0.5, "r2": 0.875}))
    assert capsys.readouterr().out == "n=4  MAE 0.2500  RMSE 0.5000  R² 0.8750\n"


@pytest.mark.parametrize("cal,line", [
    ({"bins": 15, "ece_before": 0.12, "ece_after": 0.03, "temperature": 1.5},
     "calibration: temperature 1.500, ECE (15 bins) 0.1200 before, 0.0300 after"),
    ({"bins": 10, "ece_before": None, "ece_after": 0.03, "temperature": 2.0},
     "calibration: temperature 2.000, ECE (10 bins) 0.0300 after"),
    ({"bins": 15, "ece_before": 0.1, "ece_after": 0.1, "temperature": 1.0, "kept": False, "reason": "too few [images]"},
     "calibration: ECE (15 bins) 0.1000, no temperature (T = 1): too few [images]"),
    ({"bins": 15, "ece_before": 0.12, "ece_after": 0.02, "temperature": 1.25, "fitted_on_these_images": True,
      "out_of_fold": {"ece_before": 0.13, "ece_after": 0.05, "nll_before": 0.5, "nll_after": 0.4}},
     "calibration: temperature 1.250, ECE (15 bins) 0.1200 before, 0.0200 after on the images that fitted it; "
     "out-of-fold (not fitted on): 0.1300 -> 0.0500"),
    ({"bins": 15, "ece_before": 0.12, "ece_after": 0.02, "temperature": 1.25, "fitted_on_these_images": True},
     "calibration: temperature 1.250, ECE (15 bins) 0.1200 before, 0.0200 after on the images that fitted it"),
])
def test_calibration_line_says_what_the_figures_were_measured_on(capsys, cal, line):
    results.print_metrics(_typed({**CLASSIFIED, "calibration": cal}))
    assert line in capsys.readouterr().out


# ----------------------------------------------------------------------------- evaluate / report
def test_evaluate_passes_its_options_and_points_at_its_files(cli, record, tmp_path):
    import cnnlab.evaluation.metrics

    run = tmp_path / "run"
    found_file = run / rundir.EVALUATION
    metrics = record(cnnlab.evaluation.metrics, "evaluate_typed",
                     _typed({**CLASSIFIED, "file": str(found_file), "absent_classes": ["c", "d"]}))
    found = cli("evaluate", run, tmp_path / "data", "--json", tmp_path / "m.json", "--split", "val", "--device", "cpu",
                "--tta")
    assert found.code == 0, found.err
    assert metrics.args == (run, tmp_path / "data")
    assert metrics.kwargs == {"json_path": tmp_path / "m.json", "split": "val", "device": "cpu", "tta": True}
    assert "macro avg" in found.out
    assert found.err_lines == ["no images of c, d: n/a, and left out of the macro and weighted averages",
                               f"metrics: {found_file}", f"confusion matrix plot: {rundir.confusion_paths(run)[0]}"]


def test_evaluate_on_other_data_has_no_plot_line(cli, record, tmp_path):
    import cnnlab.evaluation.metrics

    metrics = record(cnnlab.evaluation.metrics, "evaluate_typed", _typed({**CLASSIFIED, "file": str(tmp_path / "other.json")}))
    found = cli("evaluate", tmp_path, tmp_path)
    assert metrics.kwargs == {"json_path": None, "split": "auto", "device": "auto", "tta": False}
    assert found.err_lines == [f"metrics: {tmp_path / 'other.json'}"]


def test_report_passes_the_data_and_prints_the_page(cli, record, tmp_path):
    import cnnlab.evaluation.report

    page = record(cnnlab.evaluation.report, "build_report", tmp_path / "report.html")
    found = cli("report", tmp_path, "--data", tmp_path / "d")
    assert page.args == (tmp_path, tmp_path / "d")
    assert found.err_lines == [f"report: {tmp_path / 'report.html'}"]


# ----------------------------------------------------------------------------- predict (the tiny run, for real)
@pytest.fixture(scope="module")
def images(bars):
    return sorted((bars / "a").glob("*.png"))[:3]


def test_predict_json_is_strict_and_has_top_k(cli, tiny_run, images):
    found = cli("predict", tiny_run, *images, "--json", "-k", "2", "--device", "cpu")
    assert found.code == 0, found.err
    preds = json.loads(found.out, parse_constant=lambda c: pytest.fail(f"not strict JSON: {c}"))
    assert [p["path"] for p in preds] == [str(p) for p in images]
    for p in preds:
        assert len(p["top_k"]) == 2 and p["top_k"][0]["label"] == p["label"] and not p["uncertain"]
        assert p["top_k"][0]["probability"] >= p["top_k"][1]["probability"]
        assert math.isclose(p["probability"], p["top_k"][0]["probability"])


def test_predict_table_marks_uncertain_predictions(cli, tiny_run, images):
    found = cli("predict", tiny_run, images[0], "--threshold", "0.999999", "-k", "1")
    assert found.code == 0, found.err
    row = _cells(found.out, str(images[0])[:20])
    assert row[1] == "uncertain" and 0 < float(row[2]) < 0.999999 and "top 1" in found.out


def test_predict_csv_agrees_with_json(cli, tiny_run, images, tmp_path):
    preds = json.loads(cli("predict", tiny_run, *images, "--json").out)
    found = cli("predict", tiny_run, *images, "--csv", tmp_path / "p.csv")
    assert found.err_lines == [f"3 predictions: {tmp_path / 'p.csv'}"] and found.out == ""
    with open(tmp_path / "p.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "label", "probability", "uncertain", "top_k"]
    assert [r["label"] for r in rows] == [p["label"] for p in preds]
    assert [float(r["probability"]) for r in rows] == pytest.approx([p["probability"] for p in preds])
    assert rows[0]["top_k"] == "; ".join(f"{t['label']} {t['probability']:.4f}" for t in preds[0]["top_k"])


def test_predict_a_folder_skips_hidden_and_unreadable_files(cli, tiny_run, images, tmp_path):
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "one.png").write_bytes(images[0].read_bytes())
    (folder / ".hidden.png").write_bytes(images[1].read_bytes())
    (folder / "broken.png").write_text("not an image")
    (folder / "notes.txt").write_text("not an image either")
    found = cli("predict", tiny_run, folder, "--json")
    assert found.code == 0, found.err
    assert [p["path"] for p in json.loads(found.out)] == [str(folder / "sub" / "one.png")]
    assert len(found.err_lines) == 1 and found.err_lines[0].startswith(f"skipped {folder / 'broken.png'}: ")


@pytest.mark.parametrize("make,message", [
    (lambda d: d / "missing.png", "image not found: {d}/missing.png"),
    (lambda d: d, "no images in {d}"),
    (lambda d: (d / "bad.png").write_text("x") and d / "bad.png", "none of the images could be read ({d}/bad.png: "),
])
def test_predict_names_what_it_could_not_use_in_one_line(cli, tiny_run, tmp_path, make, message):
    found = cli("predict", tiny_run, make(tmp_path))
    assert found.code == 2 and len(found.err_lines) == 1, found.err
    assert found.err_lines[0].startswith("error: " + message.format(d=tmp_path))


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.2"])
def test_predict_threshold_is_a_probability_checked_before_loading(cli, record, tmp_path, value):
    import cnnlab.inference.predictor

    load = record(cnnlab.inference.predictor, "load")
    found = cli("predict", tmp_path, tmp_path, "--threshold", value)
    assert found.code == 2 and len(found.err_lines) == 1 and "strictly between 0 and 1" in found.err
    assert load.calls == []


def test_predict_passes_backend_device_and_tta_to_load(cli, record, tmp_path):
    import cnnlab.inference.predictor

    load = record(cnnlab.inference.predictor, "load", lambda: (_ for _ in ()).throw(SystemExit(0)))
    cli("predict", tmp_path / "run", tmp_path, "--backend", "onnx", "--device", "cpu", "--tta")
    assert load.args == (tmp_path / "run",) and load.kwargs == {"device": "cpu", "backend": "onnx", "tta": True}
