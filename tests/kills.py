"""Kill a training run with SIGKILL at a chosen point, resume it, and compare it with an uninterrupted run
(tests/training/test_resume.py and benchmarks/faults.py)."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

# The child trains through the Python API with a callback that SIGKILLs its own process at (epoch, batch):
# batch None kills right after the epoch's checkpoints are written; "save" kills in the middle of writing
# last.ckpt (after the temp file is written, before it replaces the old one).
_CHILD = r"""
import json, os, signal, sys
import torch
from lightning.pytorch.callbacks import Callback
import cnnlab

torch.set_num_threads(1)
data, out, epoch, batch, settings = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], json.loads(sys.argv[5])

class Kill(Callback):
    def on_train_batch_start(self, trainer, pl_module, b, batch_idx):
        if batch not in ("end", "save") and trainer.current_epoch == epoch and batch_idx == int(batch):
            os.kill(os.getpid(), signal.SIGKILL)

    def on_train_epoch_end(self, trainer, pl_module):
        # Checkpoint callbacks run after this one: the kill lands once this epoch's files are all written.
        if batch == "end" and trainer.current_epoch == epoch + 1:
            os.kill(os.getpid(), signal.SIGKILL)

if batch == "save":
    real_replace, saves = os.replace, []
    def dying_replace(src, dst):
        if str(dst).endswith("last.ckpt"):
            saves.append(dst)
            if len(saves) == epoch + 1:  # the temp file of this epoch's last.ckpt is complete, not yet in place
                os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst)
    os.replace = dying_replace
cnnlab.train(data, out, callbacks=[Kill()], **settings)
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tensors_sha256(path: Path) -> str:
    """The weights' own bytes (names, dtypes, shapes, values), without the file's metadata (the config)."""
    from safetensors.torch import load_file

    digest = hashlib.sha256()
    for name, tensor in sorted(load_file(path).items()):
        digest.update(f"{name}{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.contiguous().view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def killed(data: Path, out: Path, epoch: int, batch, settings: dict) -> None:
    """Train in a child that SIGKILLs itself at (epoch, batch)."""
    child = subprocess.run([sys.executable, "-c", _CHILD, str(data), str(out), str(epoch), str(batch),
                            json.dumps(settings)], env=ENV, capture_output=True, text=True, timeout=300)
    assert child.returncode == -9, (child.returncode, child.stderr[-2000:])


def _wait(pid: int, timeout: float) -> int:
    """The child's wait status, or SIGKILL it and fail after ``timeout`` seconds (as ``killed``'s subprocess
    timeout does: a child stuck on a lock another thread held at the fork must not hang the suite)."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"the forked training did not end within {timeout} s")
        time.sleep(0.05)


def killed_in_fork(data: Path, out: Path, epoch: int, batch, settings: dict) -> None:
    """``killed`` in a fork of this process: the same child code and the same SIGKILL, without a new interpreter
    spending seconds importing torch and Lightning (the caller has them imported already; one thread, no CUDA)."""
    pid = os.fork()
    if pid == 0:  # the child never returns into the caller: it is killed, or it leaves with os._exit
        try:
            sys.argv = ["-c", str(data), str(out), str(epoch), str(batch), json.dumps(settings)]
            exec(_CHILD, {"__name__": "__main__"})
        finally:
            os._exit(3)
    status = _wait(pid, timeout=300)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, os.waitstatus_to_exitcode(status)


def killed_then_resumed(data: Path, out: Path, epoch: int, batch, settings: dict,
                        *flags: str) -> subprocess.CompletedProcess:
    """Train in a child that SIGKILLs itself at (epoch, batch), then ``--resume`` it (with ``flags``)."""
    killed(data, out, epoch, batch, settings)
    return subprocess.run([sys.executable, "-m", "cnnlab", "train", "--resume", "--out", str(out), *flags],
                          env=ENV, capture_output=True, text=True, timeout=300)


def killed_in_fork_then_resumed(data: Path, out: Path, epoch: int, batch, settings: dict, *flags: str):
    """``killed_then_resumed`` for tests: the kill in a fork (``killed_in_fork``) and ``cnnlab train --resume``
    through the CLI in this process (``conftest.invoke``): a CliResult with returncode, stdout and stderr."""
    from conftest import invoke

    killed_in_fork(data, out, epoch, batch, settings)
    return invoke("train", "--resume", "--out", out, *flags)
