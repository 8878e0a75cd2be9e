"""Pooling: its exact facts, four ways to shrink the maps trained alike, and the convolutional prior (a CNN
against an MLP on MNIST-1D with its positions in place, then under one fixed permutation)."""
from __future__ import annotations

import random
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from cnnlab.catalog.layers import POOLING
from cnnlab.errors import CnnlabError
from cnnlab.experiments.probes.common import Arrays, accuracy, arrays, curve, sgd_steps

# The variants of the course question: cnnlab's own pooling options, and Springenberg et al.'s All-CNN, where
# a 3x3 convolution of stride 2 takes each pooling layer's place.
VARIANTS = {
    "max": {"pool": "max", "blocks": [{"filters": 16}, {"filters": 32}]},
    "avg": {"pool": "avg", "blocks": [{"filters": 16}, {"filters": 32}]},
    "none": {"pool": "none", "blocks": [{"filters": 16}, {"filters": 32}]},
    "strided": {"pool": "none", "blocks": [{"filters": 16}, {"filters": 16, "stride": 2}, {"filters": 32},
                                           {"filters": 32, "stride": 2}]},
}


def parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _permute_within_windows(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """``x`` (N, C, H, W) with the values of each k x k window (stride k) shuffled by its own permutation."""
    n, c, h, w = x.shape
    win = x.reshape(n, c, h // k, k, w // k, k).permute(0, 1, 2, 4, 3, 5).reshape(n, c, h // k, w // k, k * k)
    order = torch.argsort(torch.rand(win.shape, generator=gen), dim=-1)
    win = torch.gather(win, -1, order)
    return win.reshape(n, c, h // k, w // k, k, k).permute(0, 1, 2, 4, 3, 5).reshape(n, c, h, w)


def facts(seed: int, data: str, k: int = 2) -> dict:
    """Exact: every pooling layer cnnlab builds has no parameter; max pooling's output is unchanged when the
    values inside each window are permuted, and changed when values move between windows (the control)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(8, 3, 12, 12, generator=gen)
    pools = {name: POOLING.build(name, size=k, stride=k) for name in POOLING.canonical_names()}
    within = _permute_within_windows(x, k, gen)
    across = x[..., torch.randperm(x.shape[-1], generator=gen)]  # whole columns move: windows mix
    mp, ap = pools["max"], pools["avg"]
    strided = nn.Conv2d(3, 3, 3, stride=k, padding=1)
    rows = [[name, parameters(p)] for name, p in pools.items()] + [["3x3 convolution, stride 2, C = 3",
                                                                     parameters(strided)]]
    return {"scalars": {"pool_parameters": float(sum(parameters(p) for p in pools.values())),
                        "max_within_change": float((mp(within) - mp(x)).abs().max()),
                        "max_across_change": float((mp(across) - mp(x)).abs().max()),
                        "avg_within_change": float((ap(within) - ap(x)).abs().max()),
                        "strided_parameters": float(parameters(strided))},
            "tables": {"parameters of each way to shrink the maps": {"header": ["layer", "parameters"],
                                                                     "rows": rows}}}


def _cnn(variant: str, d: Arrays) -> nn.Module:
    from cnnlab.config import ConvBlock, ModelConfig
    from cnnlab.models.custom import build_custom

    spec = VARIANTS[variant]
    cfg = ModelConfig(name="cnn", pool=spec["pool"], blocks=[ConvBlock(**b) for b in spec["blocks"]], dense=[64],
                      dropout=0.0)
    return build_custom(cfg, d.x.shape[1], tuple(d.x.shape[2:]), d.classes)


def shrink(seed: int, data: str, variant: str, steps: int = 300, lr: float = 1e-3, batch: int = 64,
           n: int = 0) -> dict:
    """A cnnlab CNN (two blocks of 16 and 32 filters, dense 64) with ``variant``'s way of shrinking the maps,
    trained ``steps`` Adam steps: its test accuracy, training accuracy and parameters."""
    torch.manual_seed(seed)
    d = arrays(data, n or None, images=True)
    model = _cnn(variant, d)
    run = sgd_steps(model, d, steps, seed, lr, batch, make_opt=lambda p: torch.optim.Adam(p, lr=lr),
                    every=max(1, steps // 20), track_accuracy=False)
    return {"scalars": {"test_accuracy": accuracy(model, d.x_test, d.y_test),
                        "train_accuracy": accuracy(model, d.x, d.y), "parameters": float(parameters(model))},
            "curves": {"train_loss": curve("step", run["step"], run["loss"])}}


@lru_cache(maxsize=1)
def mnist1d() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MNIST-1D generated offline by its own package (its default arguments: 4,000 training and 1,000 test
    sequences of 40 points), never downloaded. The package seeds numpy's and Python's global generators;
    they are restored after."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        raise CnnlabError("the pooling experiment's prior arms need the mnist1d package (a cnnlab dependency): "
                          "pip install 'mnist1d>=0.0.2'") from None
    states = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(states[0])
        random.setstate(states[1])
    return (d["x"].astype(np.float32), d["y"].astype(np.int64), d["x_test"].astype(np.float32),
            d["y_test"].astype(np.int64))


def mnist1d_arrays(shuffle: bool) -> Arrays:
    """MNIST-1D as (N, 1, 40) tensors; ``shuffle``: every sequence under one fixed random permutation of its
    40 positions (the same for training and test, every seed and every model)."""
    x, y, xt, yt = mnist1d()
    if shuffle:
        order = np.random.default_rng(0).permutation(x.shape[1])
        x, xt = x[:, order], xt[:, order]
    return Arrays(torch.from_numpy(x)[:, None], torch.from_numpy(y), torch.from_numpy(xt)[:, None],
                  torch.from_numpy(yt), 10)


def cnn_1d(channels: int = 32) -> nn.Sequential:
    """MNIST-1D's baseline CNN (three strided convolutions, then one linear layer) at ``channels`` filters."""
    return nn.Sequential(nn.Conv1d(1, channels, 5, 2, 2), nn.ReLU(), nn.Conv1d(channels, channels, 3, 2, 1), nn.ReLU(),
                         nn.Conv1d(channels, channels, 3, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(channels * 5, 10))


def mlp_1d(width: int = 64) -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(40, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, 10))


def prior(seed: int, data: str, shuffle: bool, prior_steps: int = 2000, lr: float = 1e-2, batch: int = 100) -> dict:
    """A CNN and an MLP of similar size trained alike (Adam, the same steps and data order) on MNIST-1D:
    their test accuracies and the CNN's advantage. ``data`` is unused: the set is MNIST-1D's own."""
    d = mnist1d_arrays(shuffle)
    scalars, curves = {}, {}
    for name, build in (("cnn", cnn_1d), ("mlp", mlp_1d)):
        torch.manual_seed(seed)
        model = build()
        run = sgd_steps(model, d, prior_steps, seed, lr, batch, make_opt=lambda p: torch.optim.Adam(p, lr=lr),
                        every=max(1, prior_steps // 20), track_accuracy=False)
        scalars.update({f"{name}_accuracy": accuracy(model, d.x_test, d.y_test),
                        f"{name}_parameters": float(parameters(model))})
        curves[f"{name}_train_loss"] = curve("step", run["step"], run["loss"])
    scalars["cnn_advantage"] = scalars["cnn_accuracy"] - scalars["mlp_accuracy"]
    scalars["parameter_ratio"] = scalars["mlp_parameters"] / scalars["cnn_parameters"]
    return {"scalars": scalars, "curves": curves}
