"""Screening the default recipe (#25): `cnnlab train mnist-5k/train` with one change at a time, in one process
(no start-up cost per run), each run scored four ways on mnist-5k's 1,000 test digits from one training:
the saved weights, the saved weights with test-time augmentation (the views the run trained with), and an
exponential moving average of the weights (decays EMA_DECAYS) kept beside the run, with and without TTA.
In a variant with cnnlab's own ``ema``, "saved" is that average at the best validation epoch (what
``cnnlab evaluate`` scores), and the probe's EMAs are of the training weights at the last epoch.

Wall times here exclude the process start; the headline figures come from time_to_accuracy.py. On a machine
shared with other trainings, OMP_NUM_THREADS=1 avoids torch's threads spinning against them.
Figures: benchmarks/results/recipe-2026-12-04.md.
Run: .venv/bin/python benchmarks/recipe_screen.py VARIANT [VARIANT ...] [--seeds 0 1] [--data digits]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import cnnlab
from cnnlab.data.samples import export
from common import SCRATCH

EMA_DECAYS = (0.99, 0.995, 0.998)
VARIANTS: dict[str, dict] = {
    "default": {},
    # a third block (128 filters at 7x7): the dense layer sees 1,152 values, not 3,136
    "three": {"blocks": [{"filters": 32}, {"filters": 64}, {"filters": 128}]},
    "double2": {"blocks": [{"filters": 32}, {"filters": 64, "repeat": 2}]},
    "lr6": {"lr": 0.006},
    "group2": {"group": 2},
    "aug-strong": {"rotation": 15.0, "translate": 0.15, "zoom": [0.85, 1.15]},
    "drop5": {"dropout": 0.5},
    # elastic distortion (Simard et al. 2003) on top of light: [alpha, sigma] as fractions of the side
    "elastic": {"elastic": [1.2, 0.14]},
    "elastic-half": {"elastic": [0.6, 0.14]},
    "elastic-half-e30": {"elastic": [0.6, 0.14], "epochs": 30},
    # the batched path on the CPU: bilinear geometry (v2.RandomAffine's is nearest) and per-image draws
    "batched": {"where": "device"},
    "batched-elastic-e30": {"where": "device", "elastic": [0.6, 0.14], "epochs": 30},
    "drop0": {"dropout": 0.0},
    "dense256": {"dense": [256]},
    "bs32": {"batch_size": 32, "epochs": 18},  # twice the steps at the default's epochs
    # Simard et al. trained on elastic distortion alone: here with light's shifts, without its rotation and zoom
    "elastic-shift": {"augment": "none", "translate": 0.1, "elastic": [0.6, 0.14]},
    "adamw": {"optimizer": "adamw", "weight_decay": 0.05},
    "elastic-e30": {"elastic": [0.6, 0.14], "epochs": 30},  # the loader's path: light per group, elastic per image
    # session 6: batch 32 doubles the steps an epoch (~1.3x the epoch's time), so 20 epochs fit where 30 of 64 do
    "bs32-batched-elastic-e20": {"where": "device", "elastic": [0.6, 0.14], "epochs": 20, "batch_size": 32},
    # cnnlab's own --ema (validated and saved: the "saved" column is the average at the best epoch)
    "a-ema": {"where": "device", "elastic": [0.6, 0.14], "epochs": 30, "ema": 0.995},
    "b-ema": {"elastic": [0.6, 0.14], "epochs": 30, "ema": 0.995},
    # elastic underfits (training accuracy on augmented batches 92-97%): less regularisation, more head
    "a-ema-drop0": {"where": "device", "elastic": [0.6, 0.14], "epochs": 30, "ema": 0.995, "dropout": 0.0},
    "a-ema-dense256": {"where": "device", "elastic": [0.6, 0.14], "epochs": 30, "ema": 0.995, "dense": [256]},
    # session 7: label smoothing 0.1 became the default from scratch; this is the default without it
    "no-smoothing": {"label_smoothing": 0.0},
}


class EmaProbe(Callback):
    """EMAs of the weights and BatchNorm statistics, updated after every optimiser step, kept aside."""

    def __init__(self, decays=EMA_DECAYS):
        self.decays, self.averages, self.fit_seconds = decays, {}, 0.0

    def on_train_start(self, trainer, pl_module):
        self.start = time.perf_counter()
        self.averages = {d: AveragedModel(pl_module.model, multi_avg_fn=get_ema_multi_avg_fn(d), use_buffers=True)
                         for d in self.decays}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        for average in self.averages.values():
            average.update_parameters(pl_module.model)

    def on_train_end(self, trainer, pl_module):
        self.fit_seconds = time.perf_counter() - self.start


def test_images(data: Path, predictor) -> tuple[torch.Tensor, torch.Tensor]:
    paths = sorted((data / "test").rglob("*.png"))
    index = {c: i for i, c in enumerate(predictor.classes)}
    x = torch.stack([predictor.preprocess(p) for p in paths])
    return x, torch.tensor([index[p.parent.name] for p in paths])


def accuracy(predictor, x, y) -> float:
    return float((predictor.outputs(list(x), 256).argmax(1) == y).float().mean())


def scores(run: Path, data: Path, probe: EmaProbe) -> dict:
    out = {}
    for tta in (False, True):
        predictor = cnnlab.load(run, "cpu", tta=tta)
        x, y = test_images(data, predictor)
        out["tta" if tta else "saved"] = accuracy(predictor, x, y)
        for decay, average in probe.averages.items():
            predictor.model.load_state_dict(average.module.state_dict())
            out[f"ema{decay}{'+tta' if tta else ''}"] = accuracy(predictor, x, y)
    return out


def one(name: str, seed: int, data: Path) -> dict:
    probe, run = EmaProbe(), SCRATCH / f"screen-{data.name}-{name}-{seed}"
    load_before, start = os.getloadavg()[0], time.perf_counter()
    cnnlab.train(data / "train", run, overwrite=True, seed=seed, progress=False, callbacks=[probe], **VARIANTS[name])
    seconds = time.perf_counter() - start
    epochs = json.loads((run / "training.json").read_text())["epochs"]
    row = {"data": data.name, "variant": name, "seed": seed, "train_s": round(seconds, 1), "epochs": epochs,
           "epoch_s": round(probe.fit_seconds / epochs, 2), "load": [load_before, os.getloadavg()[0]],
           **{k: round(v * 100, 2) for k, v in scores(run, data, probe).items()}}
    with open(SCRATCH / "recipe-screen.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("variants", nargs="+", choices=sorted(VARIANTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--data", default="mnist-5k", choices=["mnist-5k", "digits", "shapes"],
                        help="a built-in set, its own test split scored (the recipe must not lose on the others)")
    args = parser.parse_args()
    data = SCRATCH / args.data
    export(args.data, data)
    for name in args.variants:
        for seed in args.seeds:
            print(json.dumps(one(name, seed, data)), flush=True)


if __name__ == "__main__":
    main()
