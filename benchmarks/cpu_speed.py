"""channels_last and torch.compile on the CPU, end to end (compile time included), for a laptop user.

Each variant is a fresh `cnnlab train` process (so torch.compile compiles from nothing: the inductor
cache is off), timed from process start to exit, for
- cnn-small on mnist-5k (4,000 28x28 digits), and
- resnet18 (random init) on 1,000 64x64 RGB shapes.
It prints seconds, the ratio to channels_first eager (the baseline) and the validation accuracy. An
option becomes the CPU default only where it is faster here, end to end.

Run: .venv/bin/python benchmarks/cpu_speed.py
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
import time

from cnnlab.data.samples import export
from common import SCRATCH, mnist_5k

# The baseline is the plain layout, eager: named explicitly, since channels_last is now the CPU default for
# the custom CNNs (because of this benchmark).
VARIANTS = {"channels_first": ["--channels-last", "false"], "channels_last": ["--channels-last", "true"],
            "compile": ["--compile", "true", "--channels-last", "false"],
            "compile+channels_last": ["--compile", "true", "--channels-last", "true"]}
CASES = {
    "cnn-small mnist-5k": ["--epochs", "3", "--batch-size", "64"],
    "resnet18 64x64": ["--model", "resnet18", "--weights", "none", "--input-size", "64", "--epochs", "2",
                       "--batch-size", "64"],
}


def shapes64():
    path = SCRATCH / "shapes64"
    if not path.is_dir():
        export("shapes", path, size=64, count=200, classes=5, seed=0)
    return path


def one(data, case_flags, variant_flags, out) -> tuple[float, float]:
    cmd = [sys.executable, "-m", "cnnlab", "train", str(data), "--out", str(out), "--overwrite",
           "--progress", "false", "--accelerator", "cpu", *case_flags, *variant_flags]
    env = {**os.environ, "TORCHINDUCTOR_FX_GRAPH_CACHE": "0", "TORCHINDUCTOR_AUTOGRAD_CACHE": "0"}
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    seconds = time.perf_counter() - start
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return seconds, float(rows[-1]["val_acc"])


def repeat(pairs: int = 3) -> None:
    """channels_first and channels_last for cnn-small, alternating: the paired ratios behind the default."""
    data = mnist_5k() / "train"
    for i in range(pairs):
        first, _ = one(data, CASES["cnn-small mnist-5k"], VARIANTS["channels_first"], SCRATCH / "cpu-speed" / "rep-first")
        last, _ = one(data, CASES["cnn-small mnist-5k"], VARIANTS["channels_last"], SCRATCH / "cpu-speed" / "rep-last")
        print(f"pair {i + 1}: channels_first {first:.1f} s, channels_last {last:.1f} s, x{first / last:.2f}", flush=True)


def main() -> dict:
    datasets = {"cnn-small mnist-5k": mnist_5k() / "train", "resnet18 64x64": shapes64()}
    results = {}
    for case, flags in CASES.items():
        base = None
        for name, vflags in VARIANTS.items():
            seconds, acc = one(datasets[case], flags, vflags, SCRATCH / "cpu-speed" / f"{case}-{name}".replace(" ", "_"))
            base = base or seconds
            results[(case, name)] = seconds
            print(f"{case:20s} {name:22s} {seconds:7.1f} s  x{base / seconds:4.2f} the baseline's speed  "
                  f"val_acc {acc:.4f}", flush=True)
    for case in CASES:
        fastest = min(VARIANTS, key=lambda v: results[(case, v)])
        print(f"{case}: fastest end to end on this CPU ({os.cpu_count()} cores): {fastest}")
    return results


if __name__ == "__main__":
    main()
    repeat()
