"""Batch normalisation: robustness to the initial weight scale, and a sigmoid network that trains."""
from __future__ import annotations

import torch

from cnnlab.experiments.probes.common import accuracy, arrays, curve, mlp, sgd_steps


def scale_sweep(seed: int, data: str, batch_norm: bool, scales: tuple = (1e-3, 1e-2, 1e-1, 1.0), steps: int = 200,
                lr: float = 0.1) -> dict:
    """Final training accuracy of a 3x100 ReLU network started from N(0, s^2) weights at each scale s."""
    d = arrays(data)
    accs = []
    for s in scales:
        torch.manual_seed(seed)
        model = mlp([d.x.shape[1], 100, 100, 100, d.classes], "relu", batch_norm=batch_norm, scale=s)
        sgd_steps(model, d, steps, seed, lr, every=steps)
        accs.append(accuracy(model, d.x, d.y))
    return {"scalars": {"accuracy_spread": max(accs) - min(accs), "worst_accuracy": min(accs)},
            "curves": {"accuracy_by_scale": curve("scale", list(scales), accs)}}


def sigmoid_steps(seed: int, data: str, batch_norm: bool, steps: int = 1500, lr: float = 0.5,
                  target: float = 0.9) -> dict:
    """Steps until a 3x100 sigmoid network (Ioffe & Szegedy's MNIST net) reaches ``target`` training accuracy."""
    d = arrays(data)
    torch.manual_seed(seed)
    model = mlp([d.x.shape[1], 100, 100, 100, d.classes], "sigmoid", batch_norm=batch_norm)
    run = sgd_steps(model, d, steps, seed, lr, every=10, target=target)
    return {"scalars": {"steps_to_target": float(run["reached"] or 2 * steps)},
            "curves": {"train_accuracy": curve("step", run["step"], run["acc"])}}
