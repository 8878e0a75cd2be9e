"""Calibration (#13): a deliberately overfitted cnn-small is overconfident; the temperature fitted on its
validation split after training should bring the test ECE (15 bins) down. The model: 300 mnist-5k training
images (30 a class), no augmentation, no dropout, 60 epochs at a constant rate, so its training loss goes
to ~0; its validation split: 500 other training images (val/); the test: mnist-5k's 1,000 test digits.
Prints the ECE before and after temperature scaling, and their ratio.

Run: .venv/bin/python benchmarks/calibration.py
"""
from __future__ import annotations

import shutil

import cnnlab
from common import SCRATCH, mnist_5k


def main() -> dict:
    data = mnist_5k()
    small = SCRATCH / "mnist-overfit"
    if not small.exists():
        for folder in sorted((data / "train").iterdir()):
            files = sorted(folder.glob("*.png"))
            for split, chosen in (("train", files[:30]), ("val", files[30:80])):
                (small / split / folder.name).mkdir(parents=True)
                for f in chosen:
                    shutil.copy(f, small / split / folder.name / f.name)
    run = cnnlab.train(small, SCRATCH / "overfit", overwrite=True, epochs=60, augment="none", dropout=0.0,
                       schedule="none", progress=False)
    m = cnnlab.evaluate(run.run_dir, data, plot=False)
    cal = m["calibration"]
    print(f"calibration  overfitted cnn-small (train loss {run.metrics.get('train_loss', 0):.4f}, test acc "
          f"{m['accuracy']:.3f}): temperature {cal['temperature']:.2f} (fitted on 500 validation images); test ECE "
          f"{cal['ece_before']:.4f} before, {cal['ece_after']:.4f} after ({cal['ece_after'] / cal['ece_before']:.2f}x)")
    return cal


if __name__ == "__main__":
    main()
