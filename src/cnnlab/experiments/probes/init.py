"""Initialisation of a 30-layer ReLU network: the activation scale through depth, training, and symmetry."""
from __future__ import annotations

import math
from contextlib import contextmanager

import torch

from cnnlab.experiments.probes.common import accuracy, arrays, curve, hidden_outputs, mlp, sgd_steps


TRAINED = ("he", "xavier", "normal-0.01", "normal-1")


def deep_relu(seed: int, data: str, init: str, depth: int = 30, width: int = 256, steps: int = 300,
              lr: float = 0.01, batch: int = 64, n: int = 0, every: int = 10, train: tuple = TRAINED,
              scale_width: int = 256) -> dict:
    """The std of every hidden layer's output at initialisation (last/first, at ``scale_width``: narrower
    layers make the ratio noisy), then ``steps`` SGD steps at ``width`` if ``init`` is one of ``train`` (the
    quick budget trains only the two inits the training claim compares)."""
    torch.manual_seed(seed)
    d = arrays(data, n or None)
    wide = mlp([d.x.shape[1]] + [scale_width] * depth + [d.classes], "relu", init)
    stds = [float(h.std()) for h in hidden_outputs(wide, d.x[:256])]
    torch.manual_seed(seed)
    model = mlp([d.x.shape[1]] + [width] * depth + [d.classes], "relu", init)
    ratio = stds[-1] / stds[0] if stds[0] > 0 else 0.0
    log2 = math.log2(max(ratio, 1e-300))
    # Xavier's variance 1/fan_in ignores that ReLU zeroes half of each layer: the std halves every two layers
    scalars = {"std_ratio": ratio, "abs_log2_std_ratio": abs(log2), "gap_to_halving": abs(log2 + (depth - 1) / 2)}
    curves = {"std_by_layer": curve("layer", range(1, depth + 1), stds)}
    if init in train:
        with _flushed_denormals():  # N(0, 0.01^2) drives the signal into denormals, which a CPU computes slowly
            trained = sgd_steps(model, d, steps, seed, lr, batch, every=every, track_accuracy=False)
        losses = [x for x in trained["loss"][-5:] if x is not None]  # the mean of the last 5 logged steps
        scalars.update({"final_loss": sum(losses) / len(losses) if losses else math.inf,
                        "test_accuracy": accuracy(model, d.x_test, d.y_test)})
        curves["train_loss"] = curve("step", trained["step"], trained["loss"])
    return {"scalars": scalars, "curves": curves}


@contextmanager
def _flushed_denormals():
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def symmetry(seed: int, data: str, init: str = "constant", steps: int = 50, lr: float = 0.1) -> dict:
    """A 3-layer network trained ``steps`` SGD steps: the largest difference between two units of one layer
    (their weight rows). Identical units stay identical: every unit gets the same gradient."""
    torch.manual_seed(seed)
    d = arrays(data)
    model = mlp([d.x.shape[1], 32, 32, d.classes], "relu", init)
    sgd_steps(model, d, steps, seed, lr)
    hidden = [m.weight.detach() for m in model if isinstance(m, torch.nn.Linear)][:-1]
    spread = max(float((w - w[:1]).abs().max()) for w in hidden)
    return {"scalars": {"unit_spread": spread, "test_accuracy": accuracy(model, d.x_test, d.y_test)}}
