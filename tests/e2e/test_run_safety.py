"""Commands that must not lose data, through the CLI: --overwrite on a folder that is no cnnlab run, two
trainings into one --out, and a trainer killed with SIGKILL (issue 22, section 2)."""
import subprocess
import sys
import time

import pytest
import yaml

import cnnlab
from cnnlab import ownership, rundir
from cnnlab.errors import RunBusy
from kills import ENV, killed
from test_cli import TINY_FLAGS, run

# Trains through the Python API and waits at the start of training, its lock held, until GO exists.
_HOLDING = r"""
import os, sys, time
import torch
from lightning.pytorch.callbacks import Callback
import cnnlab

torch.set_num_threads(1)
data, out, ready, go = sys.argv[1:5]

class Hold(Callback):
    def on_train_start(self, trainer, pl_module):
        open(ready, "w").close()
        deadline = time.monotonic() + 240  # a safety net for a test that fails before it says go
        while not os.path.exists(go) and time.monotonic() < deadline:
            time.sleep(0.05)

cnnlab.train(data, out, callbacks=[Hold()], epochs=1, lr=0.01, seed=1, blocks=[{"filters": 4}], dense=[8],
             progress=False)
"""


def _error_lines(proc):
    return [line for line in proc.stderr.splitlines() if line.strip()]


def _tree(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_overwrite_of_a_project_folder_holding_its_data_removes_nothing(tmp_path):
    # The command: mkdir proj && cnnlab datasets export digits proj/data && echo "x: 1" >
    # proj/config.yaml && echo keep > proj/notes.txt && cnnlab train proj/data --out proj --overwrite --epochs 1
    run("datasets", "export", "digits", "proj/data", cwd=tmp_path)
    (tmp_path / "proj" / "config.yaml").write_text("x: 1\n")
    (tmp_path / "proj" / "notes.txt").write_text("keep\n")
    before = _tree(tmp_path / "proj")
    assert sum(1 for p in before if p.suffix == ".png") == 1797
    proc = run("train", "proj/data", "--out", "proj", "--overwrite", "--epochs", "1", cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    assert _error_lines(proc) == [_error_lines(proc)[0]] and "holds the training data" in proc.stderr
    assert _tree(tmp_path / "proj") == before  # every image, the config and the notes, byte for byte


def _holding_writer(bars, out, tmp_path):
    ready, go = tmp_path / "ready", tmp_path / "go"
    writer = subprocess.Popen([sys.executable, "-c", _HOLDING, str(bars), str(out), str(ready), str(go)], env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not ready.exists():
        assert writer.poll() is None, writer.communicate()[1][-2000:]
        time.sleep(0.1)
    return writer, go


@pytest.mark.slow
def test_a_second_training_into_a_run_being_written_is_refused_naming_the_writer(tmp_path, bars):
    out = tmp_path / "r"
    writer, go = _holding_writer(bars, out, tmp_path)
    try:
        second = run("train", bars, "--out", out, "--seed", "2", "--epochs", "1", *TINY_FLAGS, check=False)
        with pytest.raises(RunBusy, match=f"being written by PID {writer.pid} \\(training\\)"):
            cnnlab.train(bars, out, overwrite=True, epochs=1)  # --overwrite never empties a run being written
        predicted = run("predict", out, next(bars.rglob("*.png")), check=False)
    finally:
        go.touch()
        _, stderr = writer.communicate(timeout=300)
    assert writer.returncode == 0, stderr[-2000:]
    assert second.returncode == 2, second.stderr
    assert len(_error_lines(second)) == 1 and f"being written by PID {writer.pid} (training)" in second.stderr
    assert predicted.returncode == 2 and len(_error_lines(predicted)) == 1
    assert f"is being written by PID {writer.pid} (training)" in predicted.stderr
    assert "not a complete" not in predicted.stderr
    assert yaml.safe_load((out / rundir.CONFIG).read_text())["seed"] == 1  # the first run's files, whole
    assert (out / rundir.WEIGHTS).is_file()
    assert ownership.holder(out) is None  # released when the writer finished
    assert run("predict", out, next(bars.rglob("*.png"))).returncode == 0


@pytest.mark.slow
def test_a_trainer_killed_with_sigkill_leaves_no_stale_lock(tmp_path, bars):
    out = tmp_path / "run"
    killed(bars, out, 1, "end", {"epochs": 3, "lr": 0.01, "batch_size": 16, "blocks": [{"filters": 4}],
                                 "dense": [8], "progress": False})
    assert (out / ownership.LOCK).is_file() and ownership.holder(out) is None
    predicted = run("predict", out, next(bars.rglob("*.png")), check=False)
    assert predicted.returncode == 2 and f"cnnlab train --resume --out {out}" in predicted.stderr
    resumed = run("train", "--resume", "--out", out, check=False)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert len(rundir.read_csv(out / rundir.METRICS)) == 3
    assert ownership.holder(out) is None and (out / ownership.LOCK).read_bytes() == b""
