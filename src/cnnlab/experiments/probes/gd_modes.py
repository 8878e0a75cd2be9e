"""The gradient noise of a mini-batch, measured from per-example gradients (torch.func)."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from cnnlab.experiments.probes.common import arrays, mlp


def per_example_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(N, P): the gradient of each example's loss with respect to every parameter, flattened."""
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(p, xi, yi):
        return nn.functional.cross_entropy(functional_call(model, p, (xi[None],)), yi[None])

    grads = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)
    return torch.cat([g.flatten(1) for g in grads.values()], dim=1)


def noise(seed: int, data: str, batch: int = 64, examples: int = 512, draws: int = 2000) -> dict:
    """Var(g_1)/Var(g_B) over ``draws`` batches drawn without replacement from N examples, against the
    sampling formula B(N-1)/(N-B); Var is the expected squared distance to the full-batch gradient."""
    torch.manual_seed(seed)
    d = arrays(data, examples)
    model = mlp([d.x.shape[1], 64, d.classes], "relu", "he")
    g = per_example_gradients(model, d.x, d.y).double().numpy()
    n = len(g)
    batch = min(batch, n // 2)  # a small data set: the batch is at most half of it
    full = g.mean(0)
    var1 = float(((g - full) ** 2).sum(1).mean())
    rng = np.random.default_rng(seed)
    var_b = float(np.mean([((g[rng.choice(n, batch, replace=False)].mean(0) - full) ** 2).sum()
                           for _ in range(draws)]))
    measured, predicted = var1 / var_b, batch * (n - 1) / (n - batch)
    return {"scalars": {"variance_ratio": measured, "predicted_ratio": predicted, "batch": float(batch),
                        "abs_log2_ratio_error": abs(math.log2(measured / predicted))}}
