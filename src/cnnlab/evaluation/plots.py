"""Plots saved as PNG files (matplotlib, no display needed)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cnnlab import files  # noqa: E402
from cnnlab.artifacts import ReliabilityBin  # noqa: E402
from cnnlab.catalog.names import Metric  # noqa: E402


def confusion_matrix_png(matrix: np.ndarray, classes: list[str], path: Path, normalize: bool = False) -> Path:
    """Heatmap: rows = true class, columns = predicted, each cell annotated with its count (or share)."""
    m = np.asarray(matrix, dtype=float)
    if normalize:
        m = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    n = len(classes)
    side = max(4.0, 0.5 * n + 2)
    fig, ax = plt.subplots(figsize=(side, side * 0.85))
    im = ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(n), classes, rotation=45 if n > 6 else 0, ha="right" if n > 6 else "center")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix" + (" (row-normalised)" if normalize else ""))
    if n <= 30:
        threshold = m.max() / 2 if m.size else 0
        for i in range(n):
            for j in range(n):
                text = f"{m[i, j]:.2f}" if normalize else f"{int(m[i, j])}"
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if m[i, j] > threshold else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    files.save_figure(fig, path, dpi=100)
    plt.close(fig)
    return path


def activation_curve(name: str, x):
    """f(x) and f'(x) of a registered activation (derivative by autograd)."""
    import torch

    from cnnlab.catalog.layers import ACTIVATIONS

    layer = ACTIVATIONS.get(name)(1).eval()
    if name in ("glu", "softmax"):
        # GLU gates one half with the other (x, x) -> x*sigmoid(x); softmax over (x, 0) -> the first share
        other = x if name == "glu" else torch.zeros_like(x)
        inp = torch.stack([x, other], dim=1).requires_grad_(True)
        y = layer(inp)[:, 0]
        grads = torch.autograd.grad(y.sum(), inp)[0]
        grad = grads.sum(1) if name == "glu" else grads[:, 0]
    else:
        inp = x.clone().view(-1, 1).requires_grad_(True)
        y = layer(inp.clone())[:, 0]  # a non-leaf: the in-place activations (relu, elu) need one
        grad = torch.autograd.grad(y.sum(), inp)[0][:, 0]
    return y.detach(), grad.detach()


PANELS_PER_ROW, PANEL_INCHES, ACTIVATION_DPI = 4, (3.2, 2.6), 90


def activations_png(path: Path) -> Path:
    """Each activation function of the registry and its derivative, on [-4, 4]."""
    import torch

    from cnnlab.catalog.layers import ACTIVATIONS

    names = ACTIVATIONS.canonical_names()  # one panel a function: swish, not its alias silu too
    cols = PANELS_PER_ROW
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(PANEL_INCHES[0] * cols, PANEL_INCHES[1] * rows))
    x = torch.linspace(-4, 4, 401)
    for ax, name in zip(axes.flat, names):
        y, grad = activation_curve(name, x)
        ax.plot(x, y, label="f(x)")
        ax.plot(x, grad, "--", label="f'(x)")
        ax.axhline(0, color="#bbb", lw=0.5)
        ax.set_title(name)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend()
    fig.tight_layout()
    files.save_figure(fig, path, dpi=ACTIVATION_DPI)
    plt.close(fig)
    return path


def image_grid_png(maps, path: Path, title: str, cols: int = 8) -> Path:
    """Channels of a (C, H, W) tensor side by side, each scaled to its own range."""
    maps = maps.detach().float()
    n = maps.shape[0]
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.6 * rows + 0.4), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(maps[i], cmap="viridis")
    fig.suptitle(title)
    fig.tight_layout()
    files.save_figure(fig, path, dpi=90)
    plt.close(fig)
    return path


def training_curves_png(rows: list[dict], path: Path, phase_epoch: Optional[int] = None) -> Path:
    """Loss and accuracy per epoch (train and validation) and the learning rate; the fine-tuning phase
    change as a dashed line."""
    epochs = [int(r["epoch"]) + 1 for r in rows]  # metrics.csv counts from 0; a reader of the plot from 1

    def series(key):
        return [float(r[key]) if r.get(key) not in (None, "") else np.nan for r in rows]

    acc_keys = [k for k in (Metric.TRAIN_ACC.value, Metric.VAL_ACC.value) if rows and k in rows[0]]
    panels = [("loss", [Metric.TRAIN_LOSS.value, Metric.VAL_LOSS.value])] + ([("accuracy", acc_keys)] if acc_keys else []) + [("learning rate", ["lr"])]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2))
    for ax, (title, keys) in zip(np.atleast_1d(axes), panels):
        for key in keys:
            if rows and key in rows[0]:
                ax.plot(epochs, series(key), "o-", ms=3, label=key.replace("_", " "))
        if phase_epoch is not None:
            ax.axvline(phase_epoch + 0.5, color="#c33", ls="--", lw=1, label="backbone unfrozen")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if title == "learning rate":
            ax.set_yscale("log")
        ax.legend(fontsize=8)
    fig.tight_layout()
    files.save_figure(fig, path, dpi=90)
    plt.close(fig)
    return path


def gradient_flow_png(rows: list[dict], path: Path, max_layers: int = 8) -> Path:
    """Per-layer gradient norms over training (log scale), input-side layers first."""
    layers = [k for k in rows[0] if k not in ("step", "epoch")]
    pick = [layers[int(i)] for i in np.linspace(0, len(layers) - 1, min(max_layers, len(layers)))]
    steps = [int(r["step"]) for r in rows]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    colours = plt.cm.viridis(np.linspace(0, 1, len(pick)))
    for name, colour in zip(pick, colours):
        ax.semilogy(steps, [max(float(r[name]), 1e-30) for r in rows], color=colour, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("gradient norm")
    ax.set_title("gradient flow per layer (dark: input side, light: output side)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    files.save_figure(fig, path, dpi=90)
    plt.close(fig)
    return path


def reliability_png(before: Optional[list[ReliabilityBin]], after: list[ReliabilityBin], path: Path,
                    ece_before: Optional[float], ece_after: float, temperature: float) -> Path:
    """The reliability diagram: accuracy against confidence per bin (bars: after temperature scaling;
    line: before), the diagonal being perfect calibration; the bins' image counts below."""
    fig, (ax, counts) = plt.subplots(2, 1, figsize=(5.2, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    mids = [(b.low + b.high) / 2 for b in after]
    width = after[0].high - after[0].low
    ax.bar(mids, [b.accuracy or 0 for b in after], width=width * 0.92, color="#4c72b0", alpha=0.85,
           label=f"after (T={temperature:.2f}): ECE {ece_after:.4f}")
    if before is not None:
        pts = [(m, b.accuracy) for m, b in zip(mids, before) if b.n]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color="#dd8452",
                label=f"before: ECE {ece_before:.4f}" if ece_before is not None else "before")
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.set_title("reliability diagram")
    ax.legend(loc="upper left", fontsize=8)
    counts.bar(mids, [b.n for b in after], width=width * 0.92, color="#999")
    counts.set_yscale("symlog")
    counts.set_xlabel("confidence (top probability)")
    counts.set_ylabel("images")
    counts.set_xlim(0, 1)
    fig.tight_layout()
    files.save_figure(fig, path, dpi=100)
    plt.close(fig)
    return path
