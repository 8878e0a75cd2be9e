"""Activations in a 10-layer plain network: the back-propagated signal at initialisation, training under the
same SGD steps, dead units; and the softmax facts, exactly."""
from __future__ import annotations

import torch
from torch import nn

from cnnlab.experiments.probes.common import accuracy, arrays, curve, dead_fraction, mlp, sgd_steps, signals


def deep_net(seed: int, data: str, act: str, init: str, depth: int = 10, width: int = 128, steps: int = 300,
             lr: float = 0.1, batch: int = 64, n: int = 0, target: float = 0.9) -> dict:
    """dL/dz and weight-gradient norms of every layer at initialisation (biases zero), then ``steps`` SGD
    steps: test accuracy, the step the training accuracy first reaches ``target``, dead units."""
    torch.manual_seed(seed)
    d = arrays(data, n or None)
    model = mlp([d.x.shape[1]] + [width] * depth + [d.classes], act, init)
    probe = d.x[:256], d.y[:256]
    s = signals(model, *probe)
    hidden = range(depth)  # the hidden layers: the output layer's signal is the loss's own
    table = [[i + 1, f"{s['dz'][i]:.3e}", f"{s['dw'][i]:.3e}", f"{s['z_std'][i]:.3g}"] for i in hidden]
    trained = sgd_steps(model, d, steps, seed, lr, batch)
    reached = sgd_steps(_fresh(seed, d, act, init, depth, width), d, steps, seed, lr, batch, target=target)["reached"]
    return {
        "scalars": {"dz_ratio": s["dz"][0] / s["dz"][depth - 1], "dw_ratio": s["dw"][0] / s["dw"][depth - 1],
                    "test_accuracy": accuracy(model, d.x_test, d.y_test), "train_accuracy": trained["acc"][-1],
                    "steps_to_target": float(reached or steps * 2),
                    **({"dead_fraction": dead_fraction(model, d.x)} if "relu" in act else {})},
        "curves": {"dz_at_init": curve("layer", range(1, depth + 1), s["dz"][:depth]),
                   "train_accuracy": curve("step", trained["step"], trained["acc"])},
        "tables": {"back-propagated signal at initialisation": {
            "header": ["hidden layer", "|dL/dz| per example", "|dL/dW|", "std of z"], "rows": table}},
    }


def _fresh(seed, d, act, init, depth, width):
    torch.manual_seed(seed)
    return mlp([d.x.shape[1]] + [width] * depth + [d.classes], act, init)


def softmax_facts(seed: int, data: str) -> dict:
    """Exact facts in float64: softmax(z + c) = softmax(z); log-sum-exp stays finite where exp(z) overflows;
    dCE/dz = p - y."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(64, 10, generator=gen, dtype=torch.float64) * 5
    shift = (torch.softmax(z + 123.0, 1) - torch.softmax(z, 1)).abs().max()
    big = z + 1000.0  # exp(1000) overflows float64
    naive = torch.exp(big) / torch.exp(big).sum(1, keepdim=True)
    stable = torch.logsumexp(big, 1)
    y = torch.randint(0, 10, (64,), generator=gen)
    zg = z.clone().requires_grad_(True)
    nn.functional.cross_entropy(zg, y, reduction="sum").backward()
    expected = torch.softmax(z, 1) - nn.functional.one_hot(y, 10).double()
    return {"scalars": {"shift_error": float(shift), "naive_overflows": float(not torch.isfinite(naive).all()),
                        "logsumexp_finite": float(torch.isfinite(stable).all()),
                        "logsumexp_error": float((stable - 1000.0 - torch.logsumexp(z, 1)).abs().max()),
                        "gradient_error": float((zg.grad - expected).abs().max())}}
