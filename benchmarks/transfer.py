"""Transfer learning, measured.

1. Evidence that transfer works, two ways, from scratch vs from a pretrained run (--weights RUN_DIR,
   two-phase), same model (cnn-small) and epochs:
   a. other classes: pretrained on digits 0-4 of mnist-5k's train split, trained on digits 5-9 with
      20 images per class, tested on the 5-9 digits of the test split;
   b. another dataset: pretrained on mnist-5k (the demo's run), trained on scikit-learn's 8x8 digits
      with 10 images per class, tested on their 360-image test split.
2. Feature caching: epoch time of a frozen ResNet-18 (224x224, feature-extract) with cached features
   and without, side by side in one run. Target: >= 10x faster.

Run: .venv/bin/python benchmarks/transfer.py
"""
from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image

import cnnlab
from cnnlab import rundir
from common import SCRATCH, mnist_5k, verdict

PER_CLASS = 20


def _subset(src, dst, classes, per_class=None, seed=0):
    rng = np.random.default_rng(seed)
    for c in classes:
        files = sorted((src / c).glob("*.png"))
        if per_class:
            files = [files[i] for i in rng.choice(len(files), per_class, replace=False)]
        (dst / c).mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy(f, dst / c / f.name)


def evidence() -> dict:
    data, root = mnist_5k(), SCRATCH / "transfer"
    shutil.rmtree(root, ignore_errors=True)
    low, high = [str(i) for i in range(5)], [str(i) for i in range(5, 10)]
    _subset(data / "train", root / "source", low)
    _subset(data / "train", root / "target" / "train", high, PER_CLASS)
    _subset(data / "test", root / "target" / "test", high)
    common = {"progress": False, "batch_size": 16, "val_split": 0.0}
    cnnlab.train(root / "source", root / "pretrained", epochs=4, lr=0.003, schedule="onecycle",
                 progress=False, val_split=0.1, overwrite=True)
    cnnlab.train(root / "target", root / "scratch", epochs=30, lr=0.003, overwrite=True, **common)
    cnnlab.train(root / "target", root / "transferred", epochs=30, lr=0.003, weights=str(root / "pretrained"),
                 head_epochs=10, unfreeze=2, overwrite=True, **common)
    scratch = cnnlab.evaluate(root / "scratch", root / "target")["accuracy"]
    transferred = cnnlab.evaluate(root / "transferred", root / "target")["accuracy"]
    print(f"transfer evidence (a)  digits 5-9 with {PER_CLASS} images/class: from scratch {scratch * 100:.1f}%, "
          f"transferred from digits 0-4 {transferred * 100:.1f}% ({(transferred - scratch) * 100:+.1f} points)")
    return {"scratch": scratch, "transferred": transferred}


def evidence_other_dataset(per_class: int = 10) -> dict:
    from cnnlab import demo
    from cnnlab.data.samples import export

    root = SCRATCH / "digits-transfer"
    shutil.rmtree(root, ignore_errors=True)
    export("digits", root / "all")
    _subset(root / "all" / "train", root / "target" / "train", [str(c) for c in range(10)], per_class)
    shutil.copytree(root / "all" / "test", root / "target" / "test")
    _, source, _ = demo.run(SCRATCH / "demo", progress=False)
    common = {"progress": False, "batch_size": 10, "val_split": 0.0, "lr": 0.003, "epochs": 30, "overwrite": True}
    cnnlab.train(root / "target", root / "scratch", input_size=28, **common)  # the source run's input size
    cnnlab.train(root / "target", root / "transferred", weights=str(source.run_dir), head_epochs=10, **common)
    scratch = cnnlab.evaluate(root / "scratch", root / "target")["accuracy"]
    transferred = cnnlab.evaluate(root / "transferred", root / "target")["accuracy"]
    print(f"transfer evidence (b)  scikit-learn digits with {per_class} images/class: from scratch "
          f"{scratch * 100:.1f}%, transferred from mnist-5k {transferred * 100:.1f}% "
          f"({(transferred - scratch) * 100:+.1f} points; error {(1 - scratch) * 100:.1f}% -> {(1 - transferred) * 100:.1f}%)")
    return {"scratch": scratch, "transferred": transferred}


def caching(n_images: int = 160, epochs: int = 3) -> dict:
    root = SCRATCH / "caching"
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(0)
    for k in range(4):
        (root / f"c{k}").mkdir(parents=True)
        for i in range(n_images // 4):
            Image.fromarray(rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)).save(root / f"c{k}" / f"{i}.png")
    weights = root.parent / "resnet18-random.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    seconds = {}
    for cached in (False, True):
        out = root.parent / f"caching-run-{cached}"
        start = time.perf_counter()
        cnnlab.train(root, out, model="resnet18", weights=str(weights), strategy="feature-extract", epochs=epochs,
                     cache_features=cached, val_split=0.0, progress=False, overwrite=True)
        total = time.perf_counter() - start
        epoch = statistics.median(float(r["seconds"]) for r in rundir.read_csv(out / rundir.METRICS))
        seconds[cached] = (epoch, total)
    ratio = seconds[False][0] / seconds[True][0]
    print(f"feature caching  frozen resnet18, {n_images} images at 224x224: epoch {seconds[False][0]:.2f} s without, "
          f"{seconds[True][0]:.4f} s with cached features: {ratio:.0f}x (target >= 10x: {verdict(ratio, 10, True)}); "
          f"whole {epochs}-epoch run incl. the one caching pass {seconds[False][1]:.1f} s -> {seconds[True][1]:.1f} s")
    return {"ratio": ratio}


def ci_setting_spread() -> dict:
    """The setting of tests/training/test_transfer.py over its 5 seeds: the per-seed gain, its spread, and
    how far the mean sits above the test's required margin, in standard errors of the mean."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "training"))
    from test_transfer import EPOCHS, MARGIN, PER_CLASS, SEEDS, few_shot_transfer

    root = SCRATCH / "few-shot"
    shutil.rmtree(root, ignore_errors=True)
    results = few_shot_transfer(root)
    gains = [t - s for s, t in results]
    mean, spread = statistics.mean(gains), statistics.stdev(gains)
    sem = spread / len(gains) ** 0.5
    print(f"CI transfer test   digits 0-4 -> 5-9, {PER_CLASS} images/class, {EPOCHS} epochs, {SEEDS} seeds: gains "
          f"{', '.join(f'{g:+.3f}' for g in gains)}; mean {mean:+.3f}, seed-to-seed spread (sd) {spread:.3f}, "
          f"standard error of the mean {sem:.3f}; the test asserts mean >= {MARGIN}: "
          f"{(mean - MARGIN) / sem:.1f} standard errors of room (target >= 3: {verdict((mean - MARGIN) / sem, 3, True)})")
    return {"gains": gains, "sem": sem}


def main() -> None:
    ci_setting_spread()
    evidence()
    evidence_other_dataset()
    caching()


if __name__ == "__main__":
    main()
