"""The image cache on disk against decoding the files every epoch (``--cache disk`` vs ``--cache none``).

A generated folder of JPEGs (256x256) read as 128x128 training batches, no augmentation, loader in the
main process (its decoder threads use every core): the time to prepare the data (scan, decode once, and
for the cache write its file) and the time of one epoch's pass over the training batches, for
``--cache none``, then ``--cache disk`` twice (building its entry, then reusing it). The cache goes to a
temporary folder, never the home folder's.

Run: .venv/bin/python benchmarks/image_cache.py [--jpegs 300] [--size 128]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_jpegs(root: Path, n: int, side: int = 256) -> Path:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:side, 0:side]
    for i in range(n):
        folder = root / f"c{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        smooth = np.stack([yy * (i % 7 + 1) / 8, xx * (i % 5 + 1) / 6, (yy + xx) / 3], -1) % 256
        Image.fromarray((smooth + rng.integers(0, 30, smooth.shape)).astype(np.uint8)).save(
            folder / f"{i:05d}.jpg", quality=90)
    return root


def measure(data: Path, cache: str, size: int) -> tuple[float, float]:
    from cnnlab.config import load_config
    from cnnlab.data.datamodule import ImageDataModule
    from cnnlab.data.prepare import prepare
    from cnnlab.models.registry import resolve_preprocessing

    cfg = load_config(None, {"cache": cache, "decode": "cpu", "input_size": size, "in_channels": 3,
                             "augment": "none", "batch_size": 64, "num_workers": 0, "val_split": 0.0,
                             "test_split": 0.0})
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"path": str(data)})})
    start = time.perf_counter()
    prepared = prepare(cfg, lambda probed: resolve_preprocessing(cfg, probed))
    prepared_s = time.perf_counter() - start
    loader = ImageDataModule(prepared, cfg).train_dataloader()
    start = time.perf_counter()
    for _ in loader:
        pass
    return prepared_s, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jpegs", type=int, default=300)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["CNNLAB_CACHE"] = str(Path(tmp) / "cache")
        data = make_jpegs(Path(tmp) / "jpegs", args.jpegs)
        for label, cache in (("cache none", "none"), ("cache disk, building", "disk"),
                             ("cache disk, reused", "disk")):
            prepared_s, epoch_s = measure(data, cache, args.size)
            print(f"{args.jpegs} JPEGs 256x256 -> {args.size}x{args.size}, {label}: prepare {prepared_s:.2f} s, "
                  f"one epoch's batches {epoch_s:.3f} s ({args.jpegs / epoch_s:,.0f} img/s)", flush=True)


if __name__ == "__main__":
    main()
