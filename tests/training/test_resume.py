"""Nothing lost: exact resume after SIGKILL, reproducible seeds, divergence, atomic files and full disks."""
import errno
import json
import os
import shutil
import subprocess

import pytest
import torch
from safetensors.torch import load_file

import cnnlab
from cnnlab import files, rundir
from cnnlab.errors import CnnlabError, Diverged
from conftest import TINY, invoke
from kills import killed_in_fork_then_resumed as killed_then_resumed, sha256, tensors_sha256

# Dropout, rotation and noise: every source of randomness in a step is in play.
SETTINGS = {**TINY, "epochs": 4, "batch_size": 8, "dropout": 0.3, "rotation": 10, "noise": 0.05}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, bars):
    out = tmp_path_factory.mktemp("ref") / "run"
    cnnlab.train(bars, out, **SETTINGS)
    return out


@pytest.mark.parametrize("epoch,batch", [(1, "end"), (2, 3), (1, "save"), (0, 0)],
                         ids=["after-epoch-2", "mid-epoch-3", "while-saving", "before-any-checkpoint"])
def test_a_run_killed_anywhere_and_resumed_is_bit_identical(tmp_path, bars, reference, epoch, batch):
    out = tmp_path / "run"
    proc = killed_then_resumed(bars, out, epoch, batch, SETTINGS)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sha256(out / rundir.WEIGHTS) == sha256(reference / rundir.WEIGHTS)
    def rows(run):  # every figure of every epoch, but its wall time
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rundir.read_csv(run / rundir.METRICS)]

    assert rows(out) == rows(reference) and len(rows(out)) == SETTINGS["epochs"]
    if batch != 0:
        assert "resuming" in proc.stderr and f"of {SETTINGS['epochs']}" in proc.stderr


def test_loader_workers_change_nothing_and_the_seed_changes_everything(tmp_path, bars, reference):
    cnnlab.train(bars, tmp_path / "workers", num_workers=2, **SETTINGS)
    cnnlab.train(bars, tmp_path / "other-seed", seed=1, **SETTINGS)
    # The same weights (the files differ in their metadata: the config names the workers and the seed).
    assert tensors_sha256(tmp_path / "workers" / rundir.WEIGHTS) == tensors_sha256(reference / rundir.WEIGHTS)
    assert tensors_sha256(tmp_path / "other-seed" / rundir.WEIGHTS) != tensors_sha256(reference / rundir.WEIGHTS)


def test_resuming_a_finished_run_changes_nothing(tmp_path, reference):
    run = shutil.copytree(reference, tmp_path / "run")
    before = {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    result = cnnlab.train(out=run, resume=True)
    assert result.epochs == SETTINGS["epochs"]
    assert {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_last_checkpoint_is_the_last_epoch_and_time_adds_up(tmp_path, bars, reference):
    assert files.load_torch(rundir.checkpoint(reference))["epoch"] == SETTINGS["epochs"] - 1
    out = tmp_path / "run"
    killed_then_resumed(bars, out, 1, "end", SETTINGS)
    info = json.loads((out / rundir.TRAINING).read_text())
    epoch_seconds = sum(float(r["seconds"]) for r in rundir.read_csv(out / rundir.METRICS))
    assert info["complete"] and info["seconds"] >= epoch_seconds  # both sessions' epochs are counted


def test_checkpoints_load_with_weights_only(reference):
    state = torch.load(rundir.checkpoint(reference), map_location="cpu", weights_only=True)
    rng = state["callbacks"]["RandomState"]
    assert set(rng) == {"torch", "cuda", "numpy", "python"} and isinstance(rng["torch"], torch.Tensor)


# ----------------------------------------------------------------------------- divergence
def test_divergence_stops_at_the_first_non_finite_loss_and_keeps_finite_weights(tmp_path, bars):
    out = tmp_path / "run"
    with pytest.raises(Diverged, match=r"training diverged in epoch \d+, step \d+: .* is (nan|inf).*--lr, now 1e\+06"):
        cnnlab.train(bars, out, optimizer="sgd", lr=1e6, epochs=3, **TINY)
    for ckpt in (out / rundir.CHECKPOINTS).glob("*.ckpt"):
        weights = files.load_torch(ckpt)["state_dict"].values()
        assert all(torch.isfinite(v).all() for v in weights if v.is_floating_point())
    if (out / rundir.WEIGHTS).exists():
        assert all(torch.isfinite(v).all() for v in load_file(out / rundir.WEIGHTS).values())
    assert json.loads((out / rundir.TRAINING).read_text())["complete"] is False


def test_divergence_through_the_cli_is_one_line_and_nonzero(tmp_path, bars):
    proc = invoke("train", bars, "--out", tmp_path / "r", "--optimizer", "sgd", "--lr", "1e6", "--epochs", "3",
                  "--progress", "false")
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "diverged" in errors[0] and "Traceback" not in proc.stderr


def test_a_model_with_non_finite_outputs_gives_an_error_not_a_prediction(tmp_path, tiny_run, bars):
    from cnnlab.inference.predictor import load

    predictor = load(tiny_run)
    with torch.no_grad():
        next(p for p in predictor.model.parameters() if p.dim() > 1).fill_(float("nan"))
    with pytest.raises(CnnlabError, match="NaN or infinite outputs"):
        predictor.predict(next(bars.rglob("*.png")))


def test_json_is_strict_even_with_non_finite_values(tmp_path):
    text = files.dumps({"r2": float("nan"), "x": [float("inf"), 1.5]})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard token {c}")) == \
        {"r2": None, "x": [None, 1.5]}


# ----------------------------------------------------------------------------- atomic files, full disks
def test_a_failed_write_leaves_the_previous_file(tmp_path):
    path = files.write_text(tmp_path / "metrics.csv", "old")
    with pytest.raises(RuntimeError):
        with files.atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]


def _tmpfs(folder, size):
    """A small tmpfs at ``folder`` (root in CI), or None where mounting is not allowed."""
    folder.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return None
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    return folder if ok.returncode == 0 else None


def test_a_full_disk_is_one_line_and_the_previous_checkpoint_still_loads(tmp_path, bars, monkeypatch):
    from cnnlab.training.checkpoint import AtomicCheckpointIO

    out = tmp_path / "run"
    cnnlab.train(bars, out, **{**TINY, "epochs": 1})
    last = rundir.checkpoint(out)
    before = last.read_bytes()
    checkpoint = files.load_torch(last)
    # A real full disk where a tmpfs can be mounted (root, as in CI): room for one checkpoint, not two.
    disk = _tmpfs(tmp_path / "disk", size=str((len(before) * 3 // 2 // 4096 + 1) * 4096))
    if disk is not None:
        try:
            files.write_bytes(disk / "last.ckpt", before)
            with pytest.raises(CnnlabError, match="no space left on the device"):
                AtomicCheckpointIO().save_checkpoint(checkpoint, disk / "last.ckpt")
            assert files.load_torch(disk / "last.ckpt")["epoch"] == 0
            assert [p.name for p in disk.iterdir()] == ["last.ckpt"]
        finally:
            subprocess.run(["umount", str(disk)], check=False)
    # Everywhere: the disk fills while training writes its next checkpoint (ENOSPC injected at the fsync).
    real_fsync, saves = os.fsync, []

    def fsync(fd):
        name = os.readlink(f"/proc/self/fd/{fd}")
        if name.endswith(".tmp") and ".last.ckpt." in name:
            saves.append(name)
            if len(saves) > 1:  # the first epoch's checkpoint is written, the second one's is not
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", fsync)
    with pytest.raises(CnnlabError, match=r"no space left on the device while writing .*last\.ckpt.*--resume"):
        cnnlab.train(bars, out, overwrite=True, **{**TINY, "epochs": 2})
    assert files.load_torch(last)["epoch"] == 0  # the first epoch's checkpoint of the new run, intact
    assert not [p for p in last.parent.iterdir() if p.name.endswith(".tmp")]


def test_deterministic_sets_what_the_gpu_needs(tmp_path, bars, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    seen = {}

    from lightning.pytorch.callbacks import Callback

    class Look(Callback):
        def on_train_start(self, trainer, pl_module):
            seen.update(algorithms=torch.are_deterministic_algorithms_enabled(),
                        cudnn=torch.backends.cudnn.deterministic, benchmark=torch.backends.cudnn.benchmark,
                        cublas=os.environ.get("CUBLAS_WORKSPACE_CONFIG"))

    try:
        cnnlab.train(bars, tmp_path / "run", deterministic=True, callbacks=[Look()], **{**TINY, "epochs": 1})
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
    assert seen == {"algorithms": True, "cudnn": True, "benchmark": False, "cublas": ":4096:8"}


def test_gradient_rows_of_earlier_sessions_survive_a_resume(tmp_path, bars):
    from lightning.pytorch.callbacks import Callback

    class Crash(Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                raise RuntimeError("power cut")

    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="power cut"):
        cnnlab.train(bars, out, gradient_every=1, callbacks=[Crash()], **{**TINY, "epochs": 3})
    cnnlab.train(out=out, resume=True)
    epochs = {int(r["epoch"]) for r in rundir.read_csv(out / "gradients.csv")}
    assert epochs == {0, 1, 2}


def test_resuming_with_other_epochs_is_refused_in_one_line_and_the_run_still_resumes(tmp_path, bars):
    """One-cycle's length is fixed when a run starts (a 4-epoch run resumed for 6 used to end in a
    traceback, "Tried to step ... times"): --resume with another --epochs says what to run instead."""
    out = tmp_path / "run"
    proc = killed_then_resumed(bars, out, 1, "end", SETTINGS, "--epochs", "6")
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert f"was started for {SETTINGS['epochs']} epochs" in lines[0] and f"--weights {out}" in lines[0]
    assert "Traceback" not in proc.stderr
    resumed = invoke("train", "--resume", "--out", out)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert len(rundir.read_csv(out / rundir.METRICS)) == SETTINGS["epochs"]
