"""The data pipeline, measured.

1. Throughput: decoding and augmenting a generated folder of 2,000 JPEGs (256x256) into 224x224
   training batches, for 3 epochs, with cnnlab's pipeline (decode and resize once into uint8
   memory, grouped torchvision-v2 augmentation, uint8 batches out) and with the textbook baseline
   (torchvision ImageFolder + PIL + the same v2 transforms per image, then ToTensor), same batch
   size and workers. Each measurement runs in a fresh process (cnnlab tunes malloc process-wide,
   which the baseline must not inherit), alternating over 3 rounds (median of the paired ratios).
   Two more columns: cnnlab with CNNLAB_TUNE_MALLOC=0 (that setting's share), and with --cache none
   (no in-memory cache: decoding every epoch, as the baseline does).
   Target: cnnlab >= 1.5x the baseline.
2. Data-wait share: the part of a training epoch spent waiting for the next batch, for the default
   CNN on mnist-5k and for resnet18 on the JPEG folder.
   With a GPU, also resnet18's training throughput with augmentation in the loader vs on the GPU.
3. Augmentation helps: cnn-small on 500 mnist-5k training images (50 per class), with and without
   light geometric augmentation, tested on the 1,000 test digits.

Run: .venv/bin/python benchmarks/pipeline.py
"""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision.transforms import v2

import cnnlab
from cnnlab.config import load_config
from cnnlab.data.datamodule import ImageDataModule
from cnnlab.data.prepare import prepare
from cnnlab.models.registry import resolve_preprocessing
from common import SCRATCH, mnist_5k, verdict

N_JPEGS, EPOCHS, BATCH, WORKERS, ROUNDS = 2000, 3, 64, 0, 3
AUGMENT = {"hflip": 0.5, "rotation": 10.0, "translate": 0.1, "brightness": 0.2, "contrast": 0.2}


def jpeg_folder(n: int = N_JPEGS):
    root = SCRATCH / f"jpegs-{n}"
    if root.is_dir():
        return root
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / f"class{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)  # smooth content compresses like photos
        img = Image.fromarray(base).resize((256, 256), Image.Resampling.BICUBIC)
        img.save(folder / f"{i:05d}.jpg", quality=90)
    return root


def baseline(root) -> float:
    transform = v2.Compose([v2.Resize((224, 224)), v2.RandomHorizontalFlip(0.5),
                            v2.RandomAffine(degrees=10, translate=(0.1, 0.1)), v2.ColorJitter(0.2, 0.2),
                            v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)])
    loader = DataLoader(datasets.ImageFolder(root, transform=transform), batch_size=BATCH, shuffle=True,
                        num_workers=WORKERS)
    start, n = time.perf_counter(), 0
    for _ in range(EPOCHS):
        for x, _ in loader:
            n += len(x)
    return n / (time.perf_counter() - start)


def ours(root, cache: str = "auto") -> float:
    cfg = load_config(None, {"model": "resnet18", "val_split": 0.0, "batch_size": BATCH, "num_workers": WORKERS,
                             "cache": cache, **AUGMENT})
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"path": str(root)})})
    start, n = time.perf_counter(), 0
    prepared = prepare(cfg, lambda probed: resolve_preprocessing(cfg, probed))  # decode + resize once
    loader = ImageDataModule(prepared, cfg).train_dataloader()
    for _ in range(EPOCHS):
        for x, _ in loader:
            x = x.float().div_(255)  # the last step, exactly as the model's Normalize does it
            n += len(x)
    return n / (time.perf_counter() - start)


class DataWait(Callback):
    """Time between one training step's end and the next one's start: waiting for data (and hooks)."""

    def __init__(self) -> None:
        self.wait = 0.0
        self.total = 0.0
        self.images = 0

    def on_train_epoch_start(self, trainer, pl_module):
        self.epoch_start = self.last = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.wait += time.perf_counter() - self.last

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.last = time.perf_counter()
        self.images += len(batch[0])

    def on_train_epoch_end(self, trainer, pl_module):
        self.total += time.perf_counter() - self.epoch_start


def data_wait(data, out, **overrides) -> tuple[float, float]:
    """(share of the epochs spent waiting for data, training images per second)."""
    probe = DataWait()
    cnnlab.train(data, out, overwrite=True, progress=False, val_split=0.0, callbacks=[probe], **overrides)
    return probe.wait / probe.total, probe.images / probe.total


def augmentation_helps() -> tuple[float, float]:
    data, root = mnist_5k(), SCRATCH / "mnist-500"
    if not root.is_dir():
        rng = np.random.default_rng(0)
        for c in range(10):
            files = sorted((data / "train" / str(c)).glob("*.png"))
            for i in rng.choice(len(files), 50, replace=False):
                (root / "train" / str(c)).mkdir(parents=True, exist_ok=True)
                shutil.copy(files[i], root / "train" / str(c))
        shutil.copytree(data / "test", root / "test")
    common = {"epochs": 30, "lr": 0.003, "batch_size": 32, "val_split": 0.0, "progress": False, "overwrite": True}
    cnnlab.train(root, SCRATCH / "aug-off", **common)
    cnnlab.train(root, SCRATCH / "aug-on", rotation=10, translate=0.1, zoom=[0.9, 1.1], **common)
    return (cnnlab.evaluate(SCRATCH / "aug-off", root)["accuracy"], cnnlab.evaluate(SCRATCH / "aug-on", root)["accuracy"])


PIPELINES = {"baseline": baseline, "cnnlab": ours, "cnnlab-none": lambda root: ours(root, cache="none")}


def in_fresh_process(pipeline: str, root, **env) -> float:
    out = subprocess.run([sys.executable, __file__, "--throughput", pipeline, str(root)], check=True,
                         capture_output=True, text=True, env={**os.environ, **env})
    return float(out.stdout.split()[-1])


def main() -> None:
    root = jpeg_folder()
    rounds = [(in_fresh_process("baseline", root), in_fresh_process("cnnlab", root),
               in_fresh_process("cnnlab", root, CNNLAB_TUNE_MALLOC="0"), in_fresh_process("cnnlab-none", root))
              for _ in range(ROUNDS)]  # alternating: this VM drifts
    ratios = [mine / base for base, mine, *_ in rounds]
    ratio = statistics.median(ratios)
    base, mine, untuned, disk = (statistics.median(r[i] for r in rounds) for i in range(4))
    print(f"pipeline  {N_JPEGS} JPEGs 256x256 -> augmented 224x224 batches, {EPOCHS} epochs, {WORKERS} workers: "
          f"ImageFolder+PIL baseline {base:.0f} img/s, cnnlab {mine:.0f} img/s (without its malloc setting "
          f"{untuned:.0f}; with --cache none, decoding every epoch, {disk:.0f}); paired ratios "
          f"{', '.join(f'{r:.2f}' for r in ratios)}; median {ratio:.2f}x (target >= 1.5x: {verdict(ratio, 1.5, True)})")
    mnist, _ = data_wait(mnist_5k() / "train", SCRATCH / "wait-mnist", epochs=2)
    resnet, _ = data_wait(jpeg_folder(256), SCRATCH / "wait-resnet", epochs=1, model="resnet18", weights="none",
                          strategy="full", batch_size=32, **AUGMENT)
    print(f"data-wait share of an epoch  cnn-small on mnist-5k: {mnist * 100:.1f}%, "
          f"resnet18 on 256 JPEGs (224x224, augmented): {resnet * 100:.1f}%")
    if torch.cuda.is_available():  # augmenting in the loader (CPU) vs on the GPU after the copy
        runs = {where: data_wait(root, SCRATCH / f"gpu-{where}", epochs=2, model="resnet18", weights="none",
                                 strategy="full", batch_size=128, precision="16-mixed", where=where, **AUGMENT)
                for where in ("loader", "device")}
        print("GPU resnet18, 2,000 JPEGs, augmented: " + "; ".join(
            f"augment in {w}: {rate:.0f} img/s, data-wait {share * 100:.1f}%" for w, (share, rate) in runs.items()))
    else:
        print("GPU augmentation: no GPU here, skipped")
    off, on = augmentation_helps()
    print(f"augmentation helps  cnn-small on 500 mnist-5k images, test on 1,000: without {off * 100:.1f}%, "
          f"with rotation/translate/zoom {on * 100:.1f}% (+{(on - off) * 100:.1f} points)")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--throughput"]:
        print(PIPELINES[sys.argv[2]](sys.argv[3]))
    else:
        main()
