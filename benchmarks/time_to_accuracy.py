"""mnist-5k time-to-accuracy on this CPU: wall seconds of `cnnlab train` (process start to exit) with
the default model, then the accuracy of that run on the 1,000-image test split.

Target: test accuracy >= 98.0% with the training command taking <= 60 s.
Run: .venv/bin/python benchmarks/time_to_accuracy.py
"""
from __future__ import annotations

import json
import subprocess
import sys
import time

from cnnlab.workflows.demo import as_flags
from common import SCRATCH, mnist_5k, verdict

# Exactly the demo's settings (cnnlab/workflows/demo.py), without the progress bar.
SETTINGS = as_flags() + ["--progress", "false"]


def main() -> dict:
    data = mnist_5k()
    run = SCRATCH / "tta-run"
    cmd = [sys.executable, "-m", "cnnlab", "train", str(data), "--out", str(run), "--overwrite", *SETTINGS]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    metrics = SCRATCH / "tta-metrics.json"
    subprocess.run([sys.executable, "-m", "cnnlab", "evaluate", str(run), str(data), "--json", str(metrics)],
                   check=True, capture_output=True)
    acc = json.loads(metrics.read_text())["accuracy"]
    print(f"time-to-accuracy  cnnlab train: {seconds:.1f} s (target <= 60 s, ratio {seconds / 60:.2f} of target: "
          f"{verdict(seconds, 60, False)}); test accuracy {acc * 100:.2f}% (target >= 98.0%: {verdict(acc, 0.98, True)})")
    print(f"  command: cnnlab train {data} --out {run} {' '.join(SETTINGS)}")
    return {"seconds": seconds, "accuracy": acc}


if __name__ == "__main__":
    main()
