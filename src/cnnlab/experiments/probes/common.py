"""What the probes share: data as tensors, small networks built from cnnlab's own layer registries, a
plain SGD loop, and hooks that read the network itself (dL/dz per layer, weight gradients, activation
statistics, dead units, the gradient noise of a batch)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

from cnnlab.catalog.layers import ACTIVATIONS


@dataclass
class Arrays:
    x: torch.Tensor  # (N, D) standardised features, or (N, 1, H, W) in [0, 1] with ``images``
    y: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: int


@lru_cache(maxsize=4)
def _raw(data: str, side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images (N, H, W) in [0, 1], labels, and "train"/"test" per image: a built-in set or a folder."""
    from cnnlab.data.samples import SAMPLES, load

    if data in SAMPLES:
        s = load(data)
        images = s.images.astype(np.float32) / 255
        if images.ndim == 4:
            images = images.mean(axis=3)
        return images, s.labels, np.asarray(s.split, dtype=str)
    from cnnlab.data.images import decode
    from cnnlab.data.sources import scan

    found = scan(Path(data))
    images = np.stack([decode(e.path, 1, (side, side))[0].numpy().astype(np.float32) / 255 for e in found.entries])
    labels = np.array([found.classes.index(e.label) for e in found.entries])
    rng = np.random.default_rng(0)
    split = np.array([e.split or ("test" if rng.random() < 0.2 else "train") for e in found.entries], dtype=str)
    return images, labels, split


def arrays(data: str, n: Optional[int] = None, images: bool = False, side: int = 28) -> Arrays:
    """The dataset's train and test images, the first ``n`` training ones (a fixed subset: the same for
    every arm and seed); flattened and standardised by the training set's statistics unless ``images``."""
    raw, labels, split = _raw(data, side)
    train, test = split == "train", split != "train"
    x, y = raw[train][:n], labels[train][:n]
    xt, yt = raw[test], labels[test]
    if images:
        return Arrays(torch.from_numpy(x)[:, None], torch.from_numpy(y).long(), torch.from_numpy(xt)[:, None],
                      torch.from_numpy(yt).long(), int(labels.max()) + 1)
    flat, flat_t = x.reshape(len(x), -1), xt.reshape(len(xt), -1)
    mean, std = flat.mean(0), flat.std(0) + 1e-3
    return Arrays(torch.from_numpy((flat - mean) / std), torch.from_numpy(y).long(),
                  torch.from_numpy((flat_t - mean) / std), torch.from_numpy(yt).long(), int(labels.max()) + 1)


def activation(name: str, width: int) -> nn.Module:
    """cnnlab's own activation (its registry), not in place, so that hooks see the pre-activation intact."""
    module = ACTIVATIONS.build(name, channels=width)
    if hasattr(module, "inplace"):
        module.inplace = False
    return module


INITS: dict[str, Callable[[torch.Tensor], None]] = {
    "default": lambda w: None,  # PyTorch's: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for nn.Linear
    "xavier": lambda w: nn.init.xavier_normal_(w),
    "he": lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
    "normal-0.01": lambda w: nn.init.normal_(w, 0.0, 0.01),
    "normal-1": lambda w: nn.init.normal_(w, 0.0, 1.0),
    "constant": lambda w: nn.init.constant_(w, 0.05),
}


def mlp(sizes: list[int], act: str, init: str = "default", batch_norm: bool = False, zero_bias: bool = True,
        scale: Optional[float] = None) -> nn.Sequential:
    """Dense layers ``sizes[0] -> ... -> sizes[-1]`` with an activation (and optional BN) between them.
    ``scale``: every weight drawn from N(0, scale^2) instead of ``init``."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        linear = nn.Linear(a, b)
        if scale is not None:
            nn.init.normal_(linear.weight, 0.0, scale)
        else:
            INITS[init](linear.weight)
        if zero_bias:
            nn.init.zeros_(linear.bias)
        layers.append(linear)
        if i < len(sizes) - 2:
            if batch_norm:
                layers.append(nn.BatchNorm1d(b))
            layers.append(activation(act, b))
    return nn.Sequential(*layers)


def linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def signals(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, list[float]]:
    """One forward and backward pass: per weight layer (input side first) the norm of the back-propagated
    signal dL/dz at its output z (per example, averaged), of its weight gradient, and the statistics of z."""
    zs: list[torch.Tensor] = []
    handles = [m.register_forward_hook(lambda _m, _i, out: zs.append(out)) for m in linears(model)]
    model.zero_grad()
    out = model(x)
    for z in zs:
        z.retain_grad()
    nn.functional.cross_entropy(out, y).backward()
    for h in handles:
        h.remove()
    n = len(x)
    return {"dz": [float(z.grad.flatten(1).norm(dim=1).mean()) * n for z in zs],  # d(sum of losses)/dz per example
            "dw": [float(m.weight.grad.norm()) for m in linears(model)],
            "z_mean": [float(z.detach().mean()) for z in zs], "z_std": [float(z.detach().std()) for z in zs]}


def hidden_outputs(model: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    """The output of every activation layer (the hidden units), input side first."""
    outs: list[torch.Tensor] = []
    acts = [m for m in model if not isinstance(m, (nn.Linear, nn.BatchNorm1d, nn.Conv2d))]
    handles = [m.register_forward_hook(lambda _m, _i, out: outs.append(out.detach())) for m in acts]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return outs


def dead_fraction(model: nn.Sequential, x: torch.Tensor) -> float:
    """The share of hidden units whose pre-activation is negative for every input: dead under ReLU (no
    gradient ever), alive under leaky ReLU only through its small slope."""
    pre: list[torch.Tensor] = []
    handles = [m.register_forward_hook(lambda _m, _i, out: pre.append(out.detach())) for m in linears(model)[:-1]]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    dead = sum(int((z <= 0).all(dim=0).sum()) for z in pre)
    return dead / max(1, sum(z.shape[1] for z in pre))


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    was = model.training
    model.eval()
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    model.train(was)
    return acc


def sgd_steps(model: nn.Module, data: Arrays, steps: int, seed: int, lr: float, batch: int = 64,
              make_opt: Optional[Callable] = None, every: int = 25, target: Optional[float] = None,
              track_accuracy: bool = True) -> dict:
    """Mini-batch training from ``seed``'s data order: the training loss and accuracy curve (on the whole
    training set every ``every`` steps; None without ``track_accuracy``, which saves that pass), and the
    first step where the accuracy reaches ``target``."""
    gen = torch.Generator().manual_seed(seed)
    opt = make_opt(model.parameters()) if make_opt else torch.optim.SGD(model.parameters(), lr=lr)
    curve_step, curve_loss, curve_acc, reached = [], [], [], None
    n = len(data.y)
    order = torch.randperm(n, generator=gen)
    pos = 0
    for step in range(1, steps + 1):
        if pos + batch > n:
            order, pos = torch.randperm(n, generator=gen), 0
        idx = order[pos: pos + batch]
        pos += batch
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(data.x[idx]), data.y[idx])
        loss.backward()
        opt.step()
        if step % every == 0 or step == steps:
            acc = accuracy(model, data.x, data.y) if track_accuracy or target is not None else None
            curve_step.append(step)
            value = float(loss.detach())
            curve_loss.append(value if math.isfinite(value) else None)
            curve_acc.append(acc)
            if target is not None and reached is None and acc >= target:
                reached = step
                break
    return {"step": curve_step, "loss": curve_loss, "acc": curve_acc, "reached": reached}


def curve(x_name: str, xs, ys) -> dict:
    return {x_name: list(xs), "y": list(ys)}
