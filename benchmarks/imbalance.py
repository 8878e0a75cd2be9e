"""Class imbalance (#13): mnist-5k with the training images of digits 0-4 cut to 10%, then the default
recipe plain, with --class-weights auto, and with --sampler balanced, over 3 seeds; evaluated on the whole
(balanced) test split. The figure that matters is the minority classes' macro recall (digits 0-4).

Run: .venv/bin/python benchmarks/imbalance.py [--seeds 3]
"""
from __future__ import annotations

import argparse
import shutil
import statistics

import cnnlab
from common import SCRATCH, mnist_5k

MINORITY = [str(d) for d in range(5)]
VARIANTS = {"plain": {}, "class weights": {"class_weights": "auto"}, "balanced sampler": {"sampler": "balanced"}}


def skewed(data):
    out = SCRATCH / "mnist-5k-skewed"
    if not out.exists():
        for folder in sorted((data / "train").iterdir()):
            files = sorted(folder.glob("*.png"))
            keep = files[: len(files) // 10] if folder.name in MINORITY else files
            (out / "train" / folder.name).mkdir(parents=True)
            for f in keep:
                shutil.copy(f, out / "train" / folder.name / f.name)
        shutil.copytree(data / "test", out / "test")
    return out


def main(seeds: int = 3) -> dict:
    data = skewed(mnist_5k())
    counts = {d.name: len(list(d.glob("*.png"))) for d in sorted((data / "train").iterdir())}
    print(f"imbalance  training images per class: {counts} (ratio {max(counts.values()) / min(counts.values()):.0f}:1)")
    table: dict = {name: [] for name in VARIANTS}
    for seed in range(seeds):
        for name, flags in VARIANTS.items():
            run = cnnlab.train(data / "train", SCRATCH / f"imb-{name.replace(' ', '-')}-{seed}", overwrite=True,
                               seed=seed, progress=False, **flags)
            m = cnnlab.evaluate(run.run_dir, data, plot=False)
            minority = statistics.mean(m["per_class"][c]["recall"] for c in MINORITY)
            table[name].append((minority, m["accuracy"], m["balanced_accuracy"]))
            print(f"  seed {seed} {name:17s} minority macro recall {minority:.4f}  accuracy {m['accuracy']:.4f}  "
                  f"balanced accuracy {m['balanced_accuracy']:.4f}", flush=True)
    base = statistics.mean(r[0] for r in table["plain"])
    for name, rows in table.items():
        mean = statistics.mean(r[0] for r in rows)
        print(f"imbalance  {name:17s} minority macro recall {mean:.4f} (mean of {seeds} seeds; {mean - base:+.4f} vs plain), "
              f"accuracy {statistics.mean(r[1] for r in rows):.4f}")
    return table


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    main(parser.parse_args().seeds)
