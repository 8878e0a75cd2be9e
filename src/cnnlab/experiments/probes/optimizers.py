"""Momentum on an ill-conditioned quadratic, exactly; and each optimiser at its best learning rate on data."""
from __future__ import annotations

import numpy as np
import torch

from cnnlab.config import OptimConfig
from cnnlab.experiments.probes.common import arrays, curve, mlp, sgd_steps
from cnnlab.catalog.optim import OPTIMIZERS


def iterations(kappa: float, momentum: bool, tol: float = 1e-6, dim: int = 20, limit: int = 100_000) -> int:
    """Steps until |x - x*| < tol |x0 - x*| on f(x) = x^T A x / 2 with eigenvalues 1..kappa, at the optimal
    step size: 2/(L + mu) for GD; alpha = 4/(sqrt L + sqrt mu)^2, beta = ((sqrt k - 1)/(sqrt k + 1))^2 for
    the heavy ball (Polyak 1964; Goh 2017)."""
    eig = np.linspace(1.0, kappa, dim)
    x = np.ones(dim)
    prev = x.copy()
    if momentum:
        alpha, beta = 4 / (np.sqrt(kappa) + 1) ** 2, ((np.sqrt(kappa) - 1) / (np.sqrt(kappa) + 1)) ** 2
    else:
        alpha, beta = 2 / (kappa + 1), 0.0
    start = np.linalg.norm(x)
    for k in range(1, limit + 1):
        x, prev = x - alpha * eig * x + beta * (x - prev), x
        if np.linalg.norm(x) < tol * start:
            return k
    return limit


def quadratic(seed: int, data: str, kappa: float = 100.0) -> dict:
    gd, hb = iterations(kappa, False), iterations(kappa, True)
    rates = [iterations(k, False) / iterations(k, True) for k in (10, 100, 1000)]
    return {"scalars": {"gd_iterations": float(gd), "momentum_iterations": float(hb), "speedup": gd / hb},
            "curves": {"speedup": curve("kappa", [10, 100, 1000], rates)}}


SETTINGS = {"sgd": {"momentum": 0.0}, "momentum": {"momentum": 0.9}, "nesterov": {"momentum": 0.9, "nesterov": True},
            "rmsprop": {"momentum": 0.0}, "adam": {}, "adamw": {"weight_decay": 0.01}}


def tuned(seed: int, data: str, optimizer: str, grid: tuple = (), steps: int = 400, target: float = 0.9,
          n: int = 0) -> dict:
    """Steps to ``target`` training accuracy at each learning rate of ``grid``; the best one counts
    (Choi et al. 2019: comparisons are fair only after tuning). cnnlab's own optimiser registry builds it."""
    d = arrays(data, n or None)
    registered = "sgd" if optimizer in ("momentum", "nesterov") else optimizer
    found = {}
    for lr in grid:
        torch.manual_seed(seed)
        model = mlp([d.x.shape[1], 64, 64, d.classes], "relu", "he")
        cfg = OptimConfig(optimizer=registered, lr=lr, **SETTINGS[optimizer])
        run = sgd_steps(model, d, steps, seed, lr, make_opt=lambda p, c=cfg: OPTIMIZERS.build(registered, params=p, o=c),
                        target=target, every=5)
        found[lr] = run["reached"] or 2 * steps  # not reached: counted as twice the budget
    best = min(found, key=found.get)
    return {"scalars": {"steps_to_target": float(found[best]), "best_lr": best},
            "curves": {"steps_by_lr": curve("lr", list(found), list(found.values()))}}
