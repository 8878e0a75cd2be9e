"""The typed artifacts (cnnlab/artifacts.py), read and written through cnnlab/rundir.py: each one written
comes back as the same object, the file keeps its keys, a malformed file is one RunDirError, and no module
but rundir spells a run file's name."""
from __future__ import annotations

import ast
import json
import math
import re
import shutil
from pathlib import Path

import pytest

from cnnlab import files, rundir
from cnnlab.artifacts import (Calibration, CalibrationFigures, ClassFigures, Conflict, DataHealth, Evaluation,
                              LabelledPath, LeaderboardRow, Leak, OutOfFold, ReliabilityBin, SkippedFile)
from cnnlab.errors import RunDirError

SRC = Path(__file__).resolve().parent.parent / "src" / "cnnlab"

# The keys evaluation.json held, in order, when evaluate wrote it from a dict (commit 0436776).
CLASSIFICATION_KEYS = ["classes", "n", "accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro",
                       "precision_weighted", "recall_weighted", "f1_weighted", "precision_micro", "recall_micro",
                       "f1_micro", "per_class", "top_k_accuracy", "confusion_matrix", "calibration", "data", "split",
                       "split_note", "tta", "skipped", "file"]
CALIBRATION_FIGURE_KEYS = ["temperature", "bins", "ece_before", "ece_after", "reliability", "kept", "reason",
                           "fitted_on_these_images", "out_of_fold"]


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> Path:
    """A copy of the shared tiny run, free to write into."""
    return Path(shutil.copytree(tiny_run, tmp_path / "run"))


def _evaluation() -> Evaluation:
    return Evaluation(
        classes=["a", "b"], n=3, accuracy=2 / 3, balanced_accuracy=0.75, precision_macro=0.75, recall_macro=0.75,
        f1_macro=2 / 3, per_class={"a": ClassFigures(precision=1.0, recall=0.5, f1=2 / 3, support=2),
                                   "b": ClassFigures(precision=None, recall=None, f1=None, support=0)},
        absent_classes=["b"], top_k_accuracy={}, confusion_matrix=[[1, 1], [0, 1]],
        calibration=CalibrationFigures(temperature=1.5, bins=15, ece_before=None, ece_after=0.1,
                                       reliability=[ReliabilityBin(low=0.0, high=0.5, n=0)], kept=True, reason=None,
                                       fitted_on_these_images=False, out_of_fold=None),
        data="d", split="test", split_note=None, tta=None, skipped=[SkippedFile(path="x.png", reason="truncated")],
        file="evaluation.json")


def test_an_evaluation_written_through_rundir_reads_back_as_the_same_object(run_copy):
    evaluation = _evaluation()
    written = rundir.write_evaluation(run_copy, evaluation)
    assert written == run_copy / rundir.EVALUATION
    assert rundir.Run.open(run_copy).evaluation() == evaluation
    other = rundir.write_evaluation(run_copy, evaluation, "other")
    assert other == run_copy / rundir.EVALUATIONS / "other.json"
    assert rundir.read_artifact(other, Evaluation) == evaluation


def test_evaluate_writes_the_keys_in_the_order_the_dict_writer_did(run_copy, bars):
    import cnnlab

    result = cnnlab.evaluate(run_copy, bars)
    saved = json.loads((run_copy / rundir.EVALUATION).read_text())
    assert list(saved) == CLASSIFICATION_KEYS and list(saved["calibration"]) == CALIBRATION_FIGURE_KEYS
    assert list(saved["per_class"]["a"]) == ["precision", "recall", "f1", "support"]
    assert saved == result  # the public API returns the document it wrote
    typed = rundir.Run.open(run_copy).evaluation()
    assert typed.n == saved["n"] == 6 and typed.accuracy == saved["accuracy"] and typed.split == "test"
    assert typed.calibration.ece_after == saved["calibration"]["ece_after"]


def test_a_non_finite_figure_is_written_as_null(tmp_path):
    evaluation = Evaluation(n=1, mae=0.5, rmse=0.5, r2=float("nan"))  # R² of one image
    assert math.isnan(evaluation.r2)
    text = files.write_json(tmp_path / "e.json", evaluation).read_text()
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}")) == \
        {"n": 1, "mae": 0.5, "rmse": 0.5, "r2": None}


def test_calibration_round_trips_and_sets_the_temperature(run_copy):
    record = Calibration(method="m", split="val", n=60, errors=3, bins=15, bounds=[0.5, 10.0], folds=5, kept=True,
                         temperature=1.7, fitted_temperature=1.7, fold_temperatures=[1.6, 1.8, 1.7, 1.7, 1.7],
                         out_of_fold=OutOfFold(ece_before=0.2, ece_after=0.1, nll_before=0.5, nll_after=0.4),
                         reason="it lowers the out-of-fold NLL")
    rundir.write_calibration(run_copy, record)
    run = rundir.Run.open(run_copy)
    assert run.calibration() == record and run.temperature() == 1.7
    saved = json.loads((run_copy / rundir.CALIBRATION).read_text())
    assert list(saved) == ["method", "split", "n", "errors", "bins", "bounds", "folds", "kept", "temperature",
                           "fitted_temperature", "fold_temperatures", "out_of_fold", "reason"]
    rundir.write_calibration(run_copy, record.model_copy(update={"kept": False}))
    assert rundir.Run.open(run_copy).temperature() == 1.0  # a temperature not kept is not applied


def test_data_health_round_trips(run_copy):
    health = DataHealth(images=4, duplicates=[["a.png", "b.png"]],
                        label_conflicts=[Conflict(images=[LabelledPath(path="c.png", label="x"),
                                                          LabelledPath(path="d.png", label="y")])],
                        leaks=[Leak(train="e.png", test="f.png")])
    rundir.write_data_health(run_copy, health)
    assert rundir.Run.open(run_copy).data_health() == health
    saved = json.loads((run_copy / rundir.DATA_HEALTH).read_text())
    assert saved["leaks"] == [{"train": "e.png", "test": "f.png"}]  # the held-out split names the key, as before
    assert health.leaks[0].held_out == "f.png" and health.label_conflicts[0].labels == ["x", "y"]


def test_leaderboard_rows_round_trip_through_the_csv(tmp_path):
    rows = [LeaderboardRow(model="cnn-small", accuracy=0.8333333333333334, f1_macro=0.8, params=1234,
                           trained_params=1234, train_seconds=1.25, latency_ms=0.125, input="3x16x16", epochs="2",
                           report="cnn-small/report.html"),
            LeaderboardRow(model="lenet5", error="input too small")]
    rundir.write_leaderboard_rows(tmp_path, rows)
    assert rundir.read_leaderboard(tmp_path) == rows
    header = (tmp_path / rundir.LEADERBOARD_CSV).read_text().splitlines()[0]
    assert header == "model,accuracy,f1_macro,params,trained_params,train_seconds,latency_ms,input,epochs,report,error"


def test_a_run_without_the_files_reads_as_before(run_copy):
    for name in (rundir.EVALUATION, rundir.CALIBRATION, rundir.DATA_HEALTH):
        (run_copy / name).unlink(missing_ok=True)
    run = rundir.Run.open(run_copy)
    assert run.evaluation() == Evaluation() and run.evaluation().n is None  # not evaluated yet
    assert run.calibration() is None and run.temperature() == 1.0 and run.data_health() is None
    assert rundir.read_leaderboard(run_copy) == []


def test_a_missing_key_takes_the_documented_default_and_an_unknown_key_is_ignored(run_copy):
    # a run calibrated before "kept" existed kept its temperature
    (run_copy / rundir.CALIBRATION).write_text('{"temperature": 1.7, "n": 6, "from_the_future": [1, 2]}')
    cal = rundir.Run.open(run_copy).calibration()
    assert cal.kept is True and cal.split == "val" and cal.applied == 1.7 and cal.out_of_fold is None
    assert not hasattr(cal, "from_the_future")
    (run_copy / rundir.EVALUATION).write_text('{"n": 6, "accuracy": 0.5}')
    assert rundir.Run.open(run_copy).evaluation().f1_macro is None


@pytest.mark.parametrize("name, text, key", [
    (rundir.CALIBRATION, '{"temperature": "hot"}', "temperature"),
    (rundir.EVALUATION, '{"n": 6, "per_class": {"a": {"support": "many"}}}', "per_class.a.support"),
    (rundir.DATA_HEALTH, '{"leaks": [{"test": "f.png"}]}', "leaks.0.train"),
    (rundir.DATA_HEALTH, '[1, 2]', "the document"),
    (rundir.CALIBRATION, '{"temperature": NaN}', "NaN"),
    (rundir.EVALUATION, '{"n": ', "Expecting value"),
])
def test_a_malformed_file_is_one_run_dir_error_naming_the_file_and_the_key(run_copy, name, text, key):
    (run_copy / name).write_text(text)
    run = rundir.Run.open(run_copy)
    read = {rundir.CALIBRATION: run.calibration, rundir.EVALUATION: run.evaluation,
            rundir.DATA_HEALTH: run.data_health}[name]
    with pytest.raises(RunDirError) as caught:
        read()
    message = str(caught.value)
    assert "\n" not in message and str(run_copy / name) in message and key in message


def test_a_bad_leaderboard_row_is_one_run_dir_error(tmp_path):
    (tmp_path / rundir.LEADERBOARD_CSV).write_text("model,accuracy\ncnn-small,high\n")
    with pytest.raises(RunDirError, match=r"leaderboard.csv is not a valid leaderboard \(row 1, accuracy: "):
        rundir.read_leaderboard(tmp_path)


def test_the_tensorboard_logger_writes_into_the_folder_rundir_names(tmp_path):
    pytest.importorskip("tensorboard")
    logger = rundir.tracker(tmp_path, "tensorboard", "run")
    assert Path(logger.log_dir) == tmp_path / rundir.TENSORBOARD
    assert rundir.tracker(tmp_path, "csv", "run") is None


# ----------------------------------------------------------------------------- names spelled once
def _run_file_names() -> set[str]:
    """Every name of a file or folder rundir says a run (or compare's folder) holds."""
    names = {value for key, value in vars(rundir).items() if key.isupper() and isinstance(value, str)}
    names |= set(rundir.TRACKERS)
    return names - {rundir.WEIGHTS_METADATA_KEY, rundir.BEST, rundir.LAST}  # a metadata key; checkpoint stems


# A file an exported model travels with, which reads its neighbours without cnnlab installed.
STANDALONE = {SRC / "inference" / "static" / "client.py"}
# Names that are no run's file: `cnnlab lr-find --out`'s default, a plot in the working directory (the CLI
# spells it to start without torch, which rundir imports).
NOT_A_RUN_FILE = {"cli/train.py: 'lr_find.png'"}


def _spelled(path: Path, names: set[str], root: Path = SRC) -> list[str]:
    """Where ``path`` composes a path from a run file's literal name (``x / "mlruns"``) or spells a file name
    (``"leaderboard.md"``) that rundir owns."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and isinstance(node.right, ast.Constant) \
                and node.right.value in names:
            found.append(f"{path.relative_to(root)}:{node.lineno}: / {node.right.value!r}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "." in node.value \
                and node.value in names:
            found.append(f"{path.relative_to(root)}:{node.lineno}: {node.value!r}")
    return found


def test_no_module_but_rundir_spells_a_run_files_name():
    names = _run_file_names()
    assert {"lr_find.png", "lr_find.json", "tensorboard", "mlruns", "leaderboard.csv", "leaderboard.md",
            "leaderboard.html", "evaluation.json", "calibration.json", "data_health.json"} <= names
    found = [hit for path in sorted(SRC.rglob("*.py")) if path != SRC / "rundir.py" and path not in STANDALONE
             for hit in _spelled(path, names) if re.sub(r":\d+:", ":", hit) not in NOT_A_RUN_FILE]
    assert not found, "spell these through rundir: " + "; ".join(found)


def test_the_name_check_sees_a_composed_path(tmp_path):
    module = tmp_path / "m.py"
    module.write_text('out = run / "mlruns"\nname = "leaderboard.md"\nlabel = "tensorboard"\n')
    hits = _spelled(module, _run_file_names(), tmp_path)
    assert hits == ["m.py:1: / 'mlruns'", "m.py:2: 'leaderboard.md'"]  # a logger's name alone is no path
