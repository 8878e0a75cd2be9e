"""Transfer learning, measured.

1. Evidence that transfer works: cnn-small is pretrained on digits 0-4 of mnist-5k (its 4,000-image
   train split), then trained on digits 5-9 with only 20 images per class, from scratch and from the
   pretrained run (--weights RUN_DIR, two-phase); both are tested on the 5-9 digits of the test split.
2. Feature caching: epoch time of a frozen ResNet-18 (224x224, feature-extract) with cached features
   and without, side by side in one run. Target: >= 10x faster.

Run: .venv/bin/python benchmarks/transfer.py
"""
from __future__ import annotations

import shutil
import statistics
import time

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
    print(f"transfer evidence  digits 5-9 with {PER_CLASS} images/class, test on {root / 'target' / 'test'}: "
          f"from scratch {scratch * 100:.1f}%, transferred from digits 0-4 {transferred * 100:.1f}% "
          f"(+{(transferred - scratch) * 100:.1f} points)")
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


def main() -> None:
    evidence()
    caching()


if __name__ == "__main__":
    main()
