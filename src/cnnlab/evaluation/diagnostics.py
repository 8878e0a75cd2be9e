"""Backpropagation made visible: per-layer gradient norms, and the vanishing-gradient experiment."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from cnnlab import files
from cnnlab.console import console
from cnnlab.rundir import write_csv

GRADIENTS = "gradients.csv"
VANISHING_RATIO = 1e-3  # first layers' gradient norm below this fraction of the last layers': warn


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The weight tensor of every convolution and dense layer, input side first."""
    return [(name.removesuffix(".weight"), p) for name, p in model.named_parameters()
            if name.endswith(".weight") and p.dim() > 1]


def gradient_norms(model: nn.Module) -> dict[str, float]:
    return {name: float(p.grad.norm()) for name, p in weight_layers(model) if p.grad is not None}


def first_last_ratio(norms: dict[str, float], k: int = 2) -> Optional[float]:
    values = list(norms.values())
    if len(values) < 2 * k:
        return None
    last = sum(values[-k:]) / k
    return (sum(values[:k]) / k) / last if last > 0 else None


class GradientFlow(Callback):
    """Every ``every`` steps: the gradient norm of each layer into RUN/gradients.csv; warns once about
    vanishing gradients."""

    def __init__(self, run_dir: Path, every: int) -> None:
        self.path, self.every, self.rows, self.warned = Path(run_dir) / GRADIENTS, every, [], False

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.global_step % self.every:
            return
        norms = gradient_norms(pl_module.model)
        self.rows.append({"step": trainer.global_step, "epoch": trainer.current_epoch, **norms})
        ratio = first_last_ratio(norms)
        if not self.warned and ratio is not None and ratio < VANISHING_RATIO:
            self.warned = True
            console.print(f"[yellow]warning:[/] the first layers' gradient norm is {ratio:.1e} of the last layers' "
                          f"(step {trainer.global_step}): likely vanishing gradients. Try relu, batch norm or "
                          f"--residual true")

    def state_dict(self) -> dict:  # the rows so far travel in the checkpoint: a resumed run keeps them
        return {"rows": [dict(r) for r in self.rows], "warned": self.warned}

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows, self.warned = [dict(r) for r in state_dict.get("rows", [])], state_dict.get("warned", False)

    def on_train_end(self, trainer, pl_module) -> None:
        if not self.rows or not trainer.is_global_zero:
            return
        header = list(dict.fromkeys(k for r in self.rows for k in r))
        write_csv(self.path, header, ([r.get(k, "") for k in header] for r in self.rows))


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
