"""The first hour's traps, through the CLI: each of these gave a wrong answer without a word. The commands run
in this process (test_cli's ``run``); Ctrl-C needs a process of its own."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from cnnlab import files, rundir
from conftest import write_images
from test_cli import TINY_FLAGS, run


def _train(data, out, *extra):
    return run("train", data, "--out", out, "--epochs", "2", "--lr", "0.01", *TINY_FLAGS, *extra)


def test_resume_of_a_finished_run_changes_nothing(tmp_path, bars):
    _train(bars, tmp_path / "r")
    before = {p: p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()}
    proc = run("train", "--resume", "--out", tmp_path / "r")
    assert "already complete" in proc.stderr
    assert {p: p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()} == before


def test_overwrite_removes_the_old_export_and_a_stale_export_is_refused(tmp_path, bars):
    out = tmp_path / "r"
    _train(bars, out)
    run("export", out)
    stale = (out / "export" / "model.onnx").read_bytes()
    proc = _train(bars, out, "--overwrite", "--seed", "1")
    assert "--overwrite: removed the previous run" in proc.stderr
    assert not (out / "export").exists() and not (out / "evaluation.json").exists()
    # an export copied back from the old run no longer matches the new weights
    (out / "export").mkdir()
    (out / "export" / "model.onnx").write_bytes(stale)
    (out / "export" / "export.json").write_text(json.dumps({"weights_sha256": "0" * 64}))
    proc = run("predict", out, next(bars.rglob("*.png")), "--backend", "onnx", check=False)
    assert proc.returncode == 2 and "export it again" in proc.stderr


def test_evaluate_on_the_training_folder_scores_only_held_out_images(tmp_path, bars):
    out = tmp_path / "r"
    _train(bars, out, "--val-split", "0.2")
    proc = run("evaluate", out, bars, "--json", tmp_path / "m.json")
    result = json.loads((tmp_path / "m.json").read_text())
    held_out = [r for r in rundir.read_csv(out / rundir.SPLIT) if r["split"] == "test"]  # the default 10%
    assert result["n"] == len(held_out) == 6 and result["split"] == "test"
    assert "6 held-out test images" in " ".join(proc.stdout.split())
    everything = run("evaluate", out, bars, "--split", "all")
    assert "training images included" in " ".join(everything.stderr.split())
    assert json.loads((out / "evaluation.json").read_text())["n"] == 6  # --split all is not the headline


def test_other_data_does_not_replace_the_headline_and_absent_classes_are_na(tmp_path, bars):
    out = tmp_path / "r"
    _train(bars, out)
    headline = (out / "evaluation.json").read_text() if (out / "evaluation.json").exists() else None
    subset = tmp_path / "subset"
    shutil.copytree(bars / "a", subset / "a")
    shutil.copytree(bars / "b", subset / "b")
    proc = run("evaluate", out, subset)
    result = json.loads((out / "evaluations" / "subset.json").read_text())
    assert result["per_class"]["c"] == {"precision": None, "recall": None, "f1": None, "support": 0}
    assert result["absent_classes"] == ["c"] and "n/a" in proc.stdout
    assert ((out / "evaluation.json").read_text() if (out / "evaluation.json").exists() else None) == headline


def test_a_valid_folder_is_the_validation_split_and_other_folders_get_a_note(tmp_path):
    write_images(tmp_path / "kag" / "train", {"a": 12, "b": 12})
    write_images(tmp_path / "kag" / "valid", {"a": 5, "b": 5}, seed=1)
    write_images(tmp_path / "kag" / "extra", {"a": 2, "b": 2}, seed=2)
    proc = _train(tmp_path / "kag", tmp_path / "r")
    splits = [r["split"] for r in rundir.read_csv(tmp_path / "r" / rundir.SPLIT)]
    assert splits.count("val") == 10 and splits.count("train") == 24
    assert "ignoring the folder extra" in " ".join(proc.stderr.split())


def test_no_held_out_images_gets_a_note_at_training_time(tmp_path, bars):
    proc = _train(bars, tmp_path / "r", "--val-split", "0", "--test-split", "0")
    assert "no held-out images" in " ".join(proc.stderr.split())


def test_compare_reports_a_budget_cut(tmp_path, bars):
    proc = run("compare", bars, "--models", "cnn-small", "--epochs", "500", "--budget", "2", "--out", tmp_path / "c",
               "--batch-size", "4", *TINY_FLAGS)
    assert "stopped by budget after" in proc.stderr
    assert "(budget)" in (tmp_path / "c" / "leaderboard.md").read_text()


def test_train_help_lists_every_config_key_with_defaults(tmp_path):
    text = " ".join(run("train", "--help").stdout.split())
    assert "--lr [float|auto] learning rate, or auto" in text and "0.003 for models trained from scratch" in text
    assert "--logger [csv|mlflow|tensorboard|wandb]" in text and "--class-weights [none|auto]" in text
    assert "--augment (or --preset) [light|none|standard|strong]" in text
    assert all(group in text for group in ("Data", "Model", "Optimisation", "Training", "Augmentation", "Transfer"))
    assert run("--version").stdout.startswith("cnnlab ")


@pytest.mark.slow
def test_ctrl_c_exits_130_with_the_resume_command_and_keeps_the_last_epoch(tmp_path, bars):

    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "cnnlab", "train", str(bars), "--out", str(out), "--epochs", "500",
                             "--blocks", "[{filters: 4}]", "--dense", "8", "--progress", "false"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"},
                            # a shell's background job ignores SIGINT, and children inherit that: as in a terminal
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300  # a loaded machine imports slowly
    while not rundir.checkpoint(out).is_file() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=300)[1]
    assert proc.returncode == 130, err[-2000:]
    assert f"continue with: cnnlab train --resume --out {out}" in " ".join(err.split()) and "Traceback" not in err
    assert files.load_torch(rundir.checkpoint(out))["epoch"] >= 0
