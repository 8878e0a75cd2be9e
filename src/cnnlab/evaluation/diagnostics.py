"""Backpropagation made visible: per-layer gradient norms, and the vanishing-gradient experiment."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cnnlab import files
from cnnlab.training.callbacks import gradient_norms


# ----------------------------------------------------------------------------- the experiment
@dataclass
class GradientExperiment:
    layers: list[str]
    plain: list[float]
    residual: list[float]
    activation: str

    def ratio(self, which: str) -> float:
        norms = getattr(self, which)
        return norms[0] / norms[-1]


def deep_cnn(depth: int, activation: str, residual: bool, channels: int = 16, num_classes: int = 3) -> nn.Module:
    from cnnlab.config import ConvBlock, ModelConfig
    from cnnlab.models.custom import build_custom

    blocks = [ConvBlock(filters=channels, pool="max" if i in (depth // 3, 2 * depth // 3) else "none")
              for i in range(depth)]
    cfg = ModelConfig(name="cnn", blocks=blocks, activation=activation, residual=residual, batch_norm=False,
                      head="gap", dense=[], dropout=0.0)
    return build_custom(cfg, 3, (32, 32), num_classes)


def vanishing_gradients(depth: int = 20, activation: str = "sigmoid", steps: int = 5, seed: int = 0) -> GradientExperiment:
    """Two CNNs of the same depth, plain and residual, a few SGD steps on shapes: mean gradient norm per
    convolution layer, first to last."""
    from cnnlab.data.samples import load

    data = load("shapes", seed=seed, size=32, count=32, classes=3)
    x = torch.from_numpy(data.images).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(data.labels)
    result = {}
    for residual in (False, True):
        torch.manual_seed(seed)
        model = deep_cnn(depth, activation, residual)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        totals: dict[str, float] = {}
        for _step in range(steps):
            idx = torch.randperm(len(y))[:32]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            for name, value in gradient_norms(model.features).items():
                totals[name] = totals.get(name, 0.0) + value / steps
            opt.step()
        convs = [k for k in totals if ".body." in k]
        result[residual] = (convs, [totals[k] for k in convs])
    layers = [f"conv{i + 1}" for i in range(len(result[False][0]))]
    return GradientExperiment(layers, result[False][1], result[True][1], activation)


def plot_experiment(exp: GradientExperiment, path: Path) -> Path:
    from cnnlab.evaluation.plots import plt

    fig, ax = plt.subplots(figsize=(8, 4))
    ax.semilogy(range(1, len(exp.plain) + 1), exp.plain, "o-", label="plain")
    ax.semilogy(range(1, len(exp.residual) + 1), exp.residual, "s-", label="residual")
    ax.set_xlabel("convolution layer (input side first)")
    ax.set_ylabel("gradient norm (log scale)")
    ax.set_title(f"{len(exp.plain)} conv layers, {exp.activation}: gradient flow back to the first layer")
    ax.legend()
    fig.tight_layout()
    files.save_figure(fig, path, dpi=100)
    plt.close(fig)
    return path
