"""mnist-5k time-to-accuracy on this CPU, as a new user gets it: `cnnlab train mnist-5k/train` with no flags
(wall seconds from process start to exit), then `cnnlab evaluate` of that run on mnist-5k's 1,000 test digits.

Target (#13): test accuracy >= 98.0% with the training command taking <= 60 s.
Run: .venv/bin/python benchmarks/time_to_accuracy.py [--seeds 3]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from common import SCRATCH, mnist_5k, verdict


def one(data, seed: int) -> tuple[float, float, int]:
    run = SCRATCH / f"default-run-{seed}"
    flags = [] if seed == 0 else ["--seed", str(seed)]  # seed 0 is the default: no flag at all
    cmd = [sys.executable, "-m", "cnnlab", "train", str(data / "train"), "--out", str(run), "--overwrite", *flags]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    seconds = time.perf_counter() - start
    metrics = SCRATCH / f"default-metrics-{seed}.json"
    subprocess.run([sys.executable, "-m", "cnnlab", "evaluate", str(run), str(data), "--json", str(metrics)],
                   check=True, capture_output=True)
    epochs = json.loads((run / "training.json").read_text())["epochs"]
    return seconds, json.loads(metrics.read_text())["accuracy"], epochs


def main(seeds: int = 1) -> dict:
    data = mnist_5k()
    results = [one(data, seed) for seed in range(seeds)]
    for seed, (seconds, acc, epochs) in enumerate(results):
        print(f"time-to-accuracy  seed {seed}: cnnlab train {data / 'train'} (no flags, {epochs} epochs): {seconds:.1f} s "
              f"(target <= 60 s, {seconds / 60:.2f} of it: {verdict(seconds, 60, False)}); test accuracy "
              f"{acc * 100:.2f}% (target >= 98.0%: {verdict(acc, 0.98, True)})", flush=True)
    if seeds > 1:
        accs = [a for _, a, _ in results]
        print(f"  mean over {seeds} seeds: {statistics.mean(accs) * 100:.2f}% (min {min(accs) * 100:.2f}%), "
              f"{statistics.mean(s for s, _, _ in results):.1f} s")
    return {"seconds": [s for s, _, _ in results], "accuracy": [a for _, a, _ in results]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=1)
    main(parser.parse_args().seeds)
