"""Test-time augmentation (#13): the accuracy change of evaluate --tta on mnist-5k's test digits for the
default cnn-small run, and for a ResNet-18 trained from scratch (3 epochs, 32 px) on the same data.

Run: .venv/bin/python benchmarks/tta.py
"""
from __future__ import annotations

import cnnlab
from common import SCRATCH, mnist_5k


def measure(name: str, run, data) -> dict:
    plain = cnnlab.evaluate(run, data, plot=False)["accuracy"]
    tta = cnnlab.evaluate(run, data, plot=False, tta=True)
    print(f"tta  {name}: accuracy {plain:.4f} -> {tta['accuracy']:.4f} with TTA ({tta['accuracy'] - plain:+.4f}; "
          f"views: {', '.join(tta['tta'])})", flush=True)
    return {"plain": plain, "tta": tta["accuracy"]}


def main() -> dict:
    data = mnist_5k()
    small = cnnlab.train(data / "train", SCRATCH / "tta-cnn-small", overwrite=True, progress=False).run_dir
    resnet = cnnlab.train(data / "train", SCRATCH / "tta-resnet18", overwrite=True, model="resnet18", weights="none",
                          input_size=32, epochs=3, progress=False).run_dir
    return {"cnn-small": measure("cnn-small (defaults)", small, data), "resnet18": measure("resnet18 (from scratch)", resnet, data)}


if __name__ == "__main__":
    main()
