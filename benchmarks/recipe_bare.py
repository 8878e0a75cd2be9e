"""Recipe ingredients (#25) screened in a bare PyTorch loop, away from cnnlab's machinery: mnist-5k's 4,000
training digits, a seeded 3,200 of them trained on (what `cnnlab train mnist-5k/train` keeps after its
validation and test splits), scored on the 1,000 test digits. The model is cnn-small's layout (or a variant),
the augmentation light's (rotation 10, shift 0.1, zoom 0.9-1.1, per image, bilinear), Adam with one-cycle.
One thread per process, so two variants run side by side on 2 cores.

Each seed's row (and the indices of the digits it got wrong) is appended to .bench/recipe-bare.jsonl;
`--hard` then counts the digits most runs get wrong. Figures: benchmarks/results/recipe-2026-12-04.md.
Run: .venv/bin/python benchmarks/recipe_bare.py NAME '{"ls": 0.1}' --seeds 0 1 2   |   recipe_bare.py --hard
"""
from __future__ import annotations

import argparse
import collections
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.data.samples import mnist_5k
from common import SCRATCH

ROWS = SCRATCH / "recipe-bare.jsonl"
# conv layout: (filters, convolutions) per block, each block ending in 2x2 max pooling
LAYOUTS = {"small": ((32, 1), (64, 1)), "mid": ((32, 1), (64, 2)), "vgg": ((32, 2), (64, 2)), "vgg24": ((24, 2), (48, 2))}


def digits(seed: int, n_train: int):
    s = mnist_5k(0)
    x, y = torch.tensor(s.images, dtype=torch.float32).unsqueeze(1) / 255.0, torch.tensor(s.labels)
    split = np.asarray(s.split)
    train = np.random.default_rng(seed).permutation(np.where(split == "train")[0])[:n_train]
    test = np.where(split == "test")[0]
    mean, std = x[train].mean(), x[train].std()
    return (x[train] - mean) / std, y[train], (x[test] - mean) / std, y[test], float(-mean / std)


def model(layout: str, dropout: float) -> nn.Sequential:
    layers, cin = [], 1
    for filters, convs in LAYOUTS[layout]:
        for _ in range(convs):
            layers += [nn.Conv2d(cin, filters, 3, padding=1, bias=False), nn.BatchNorm2d(filters), nn.ReLU()]
            cin = filters
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers, nn.Flatten(), nn.Dropout(dropout), nn.Linear(cin * 49, 128), nn.ReLU(),
                         nn.Dropout(dropout), nn.Linear(128, 10))


def augment(x: torch.Tensor, background: float, elastic: float = 0.0) -> torch.Tensor:
    """light, drawn per image: rotation +/-10 degrees, shift +/-10%, zoom 0.9-1.1; optional elastic noise."""
    n = len(x)
    angle, scale = (torch.rand(n) * 2 - 1) * math.pi / 18, 1 / (0.9 + torch.rand(n) * 0.2)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = torch.cos(angle) * scale
    theta[:, 0, 1], theta[:, 1, 0] = -torch.sin(angle) * scale, torch.sin(angle) * scale
    theta[:, :, 2] = (torch.rand(n, 2) * 2 - 1) * 0.2
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    if elastic:
        field = F.interpolate(torch.randn(n, 2, 7, 7) * elastic, size=x.shape[-2:], mode="bicubic", align_corners=False)
        grid = grid + field.permute(0, 2, 3, 1)
    return F.grid_sample(x - background, grid, mode="bilinear", align_corners=False) + background


def run(seed: int, layout: str = "small", epochs: int = 18, bs: int = 64, lr: float = 3e-3, ls: float = 0.0,
        drop: float = 0.25, n_train: int = 3200, elastic: float = 0.0) -> dict:
    torch.manual_seed(seed)
    xtr, ytr, xte, yte, background = digits(seed, n_train)
    net = model(layout, drop)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * math.ceil(len(xtr) / bs))
    start = time.perf_counter()
    for _ in range(epochs):
        net.train()
        for idx in torch.randperm(len(xtr)).split(bs):
            loss = F.cross_entropy(net(augment(xtr[idx], background, elastic)), ytr[idx], label_smoothing=ls)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    seconds = time.perf_counter() - start
    net.eval()
    with torch.no_grad():
        wrong = (net(xte).argmax(1) != yte).nonzero().flatten().tolist()
    return {"acc": 100 * (1 - len(wrong) / len(yte)), "secs": round(seconds, 1), "wrong": wrong}


def hard(figure: Path = SCRATCH / "recipe-hard-digits.png") -> None:
    """How many test digits most runs get wrong, and a picture of them with their labels."""
    from PIL import Image, ImageDraw

    rows = [json.loads(line) for line in ROWS.read_text().splitlines()]
    counts = collections.Counter(i for r in rows for i in r["wrong"])
    print(f"{len(rows)} runs, {sum(len(r['wrong']) for r in rows) / len(rows):.1f} test errors a run on average")
    for share in (1.0, 0.75, 0.5, 0.25):
        print(f"  digits wrong in at least {share:.0%} of the runs: {sum(c >= share * len(rows) for c in counts.values())}")
    s = mnist_5k(0)
    test = np.where(np.asarray(s.split) == "test")[0]
    worst = [i for i, c in counts.most_common() if c >= len(rows) / 2]
    canvas = Image.new("L", (60 * len(worst), 76), 255)
    for j, i in enumerate(worst):
        canvas.paste(Image.fromarray(s.images[test[i]]).resize((56, 56), Image.NEAREST), (60 * j, 0))
        ImageDraw.Draw(canvas).text((60 * j + 4, 60), f"{s.labels[test[i]]} ({counts[i]}/{len(rows)})", fill=0)
    canvas.save(figure)
    print(f"  those wrong in at least half, with their labels and how many runs missed each: {figure}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name", nargs="?")
    parser.add_argument("settings", nargs="?", default="{}", help='JSON of run()\'s keywords, e.g. {"ls": 0.1}')
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--hard", action="store_true", help="count the digits the recorded runs get wrong")
    args = parser.parse_args()
    if args.hard:
        return hard()
    torch.set_num_threads(1)
    settings = json.loads(args.settings)
    for seed in args.seeds:
        row = {"name": args.name, "seed": seed, **settings, **run(seed, **settings)}
        print(json.dumps({k: v for k, v in row.items() if k != "wrong"}), flush=True)
        with open(ROWS, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
