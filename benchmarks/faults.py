"""Faults, measured: kill-and-resume, a 40 GiB zip bomb, and a diverging run.

1. Kill and resume: cnn-small on scikit-learn's digits (augmentation and dropout on), killed with
   SIGKILL at 5 points (mid-epoch, right after an epoch, while last.ckpt is being replaced, before the
   first checkpoint), then `cnnlab train --resume`; each final model.safetensors against an
   uninterrupted run's sha256. Target: 5 of 5 identical.
2. A 40 GiB zip bomb (a ~41 MB torch.save archive whose tensor record DEFLATEs to 40 GiB of zeros), given
   as --weights: time to the refusal and peak memory, against the same command on a small, plainly
   malformed file. Targets: refused in < 2 s, < 200 MB over the baseline.
3. Divergence: `--optimizer sgd --lr 1e6`: the step it stops at, of how many planned, and the time from
   the start of the step that met the NaN to the error. Target: the first non-finite step.

Run: .venv/bin/python benchmarks/faults.py
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

import cnnlab
from cnnlab.data.samples import export
from cnnlab.errors import Diverged
from common import SCRATCH, verdict

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import hostile  # noqa: E402
from kills import killed_then_resumed, sha256  # noqa: E402

SETTINGS = {"epochs": 4, "batch_size": 64, "dropout": 0.3, "rotation": 10, "noise": 0.05, "progress": False,
            "val_split": 0.1}
torch.set_num_threads(1)  # as the killed and resumed runs (OMP_NUM_THREADS=1): the same arithmetic
KILL_POINTS = [(0, 5), (1, "end"), (2, "save"), (3, 10), (0, 0)]


def kill_and_resume() -> int:
    root = SCRATCH / "faults"
    shutil.rmtree(root, ignore_errors=True)
    data = root / "digits"
    export("digits", data)
    cnnlab.train(data, root / "reference", **SETTINGS)
    reference = sha256(root / "reference" / "model.safetensors")
    same = 0
    for epoch, batch in KILL_POINTS:
        out = root / f"killed-{epoch}-{batch}"
        proc = killed_then_resumed(data, out, epoch, batch, SETTINGS)
        ok = proc.returncode == 0 and sha256(out / "model.safetensors") == reference
        same += ok
        where = {"end": "after its checkpoint", "save": "while replacing last.ckpt"}.get(str(batch), f"at batch {batch}")
        print(f"  killed in epoch {epoch} {where}: resumed sha256 {'identical' if ok else 'DIFFERENT'}")
    print(f"kill and resume    {same} of {len(KILL_POINTS)} resumed runs bit-identical to the uninterrupted one "
          f"(target 5 of 5: {verdict(same, len(KILL_POINTS), True)})")
    return same


def _measured(args: list[str]) -> tuple[int, float, float]:
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "cnnlab", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    return os.waitstatus_to_exitcode(status), time.perf_counter() - start, usage.ru_maxrss / 1024


def zip_bomb() -> tuple[float, float]:
    from cnnlab import files

    root = SCRATCH / "bomb"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    bomb = hostile.zip_bomb(root / "bomb.pth", gib=40)
    small = hostile.oversized_entry(root / "small.pth")
    start = time.perf_counter()
    try:
        files.load_torch(bomb)
    except Exception as exc:  # noqa: BLE001 - the refusal is what is measured
        refusal = time.perf_counter() - start
        print(f"  refusal: {exc}")
    data = SCRATCH / "faults" / "digits"
    export("digits", data)
    common = ["train", str(data), "--model", "resnet18", "--epochs", "1"]
    code_b, _, bomb_mb = _measured([*common, "--out", str(root / "a"), "--weights", str(bomb)])
    code_s, _, base_mb = _measured([*common, "--out", str(root / "b"), "--weights", str(small)])
    growth = bomb_mb - base_mb
    print(f"40 GiB zip bomb    {bomb.stat().st_size / 2**20:.0f} MB file: refused in {refusal * 1000:.1f} ms "
          f"(target < 2 s: {verdict(refusal, 2.0, False)}); `cnnlab train --weights bomb.pth` exit {code_b}, peak "
          f"{bomb_mb:.0f} MB vs {base_mb:.0f} MB on a small malformed file (exit {code_s}): {growth:+.0f} MB "
          f"(target < 200 MB: {verdict(growth, 200, False)})")
    return refusal, growth


class _StepClock(Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.step_started, self.step = time.perf_counter(), trainer.global_step


def divergence() -> float:
    data = SCRATCH / "faults" / "digits"
    export("digits", data)
    clock = _StepClock()
    try:
        cnnlab.train(data, SCRATCH / "faults" / "diverged", optimizer="sgd", lr=1e6, epochs=3, progress=False,
                     overwrite=True, callbacks=[clock])
        print("divergence         NOT detected")
        return float("inf")
    except Diverged as exc:
        stop = time.perf_counter() - clock.step_started
        planned = 3 * -(-int(1797 * 0.9 * 0.8) // 64)
        print(f"  {exc}")
        print(f"divergence         stopped at step {clock.step} of ~{planned} planned, {stop * 1000:.1f} ms after the "
              f"start of the step that met it (target: that step, before its update: "
              f"{verdict(clock.step, planned - 1, False)})")
        return stop


def main() -> None:
    kill_and_resume()
    zip_bomb()
    divergence()


if __name__ == "__main__":
    main()
