"""Backpropagation checked: finite differences against autograd in float64 for every layer type cnnlab
builds, and the chain rule by hand, layer by layer, on one small network."""
from __future__ import annotations

import torch
from torch import nn

from cnnlab.experiments.probes.common import activation
from cnnlab.catalog.layers import ACTIVATIONS, POOLING

EPS = 1e-6  # central differences: truncation ~EPS^2, rounding ~1e-16/EPS, both far below 1e-6 relative


def layers() -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    """Every layer type cnnlab builds (activations and pooling from their registries, so a new entry is
    checked the day it is registered), with an input shape for it."""
    found: dict[str, tuple[nn.Module, tuple[int, ...]]] = {
        "conv 3x3": (nn.Conv2d(2, 3, 3, padding=1), (2, 2, 5, 5)),
        "conv strided": (nn.Conv2d(2, 3, 3, stride=2), (2, 2, 7, 7)),
        "dense": (nn.Linear(6, 4), (3, 6)),
        "batch norm (training)": (nn.BatchNorm2d(2), (4, 2, 3, 3)),
        "batch norm (eval)": (nn.BatchNorm2d(2).eval(), (4, 2, 3, 3)),
        "dropout (eval)": (nn.Dropout(0.5).eval(), (3, 6)),
        "head: flatten + dense": (nn.Sequential(nn.Flatten(), nn.Linear(18, 3)), (2, 2, 3, 3)),
        "head: global average pooling + dense": (nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3)),
                                                 (2, 2, 3, 3)),
    }
    for name in ACTIVATIONS.canonical_names():
        found[f"activation: {name}"] = (activation(name, 4), (2, 4, 3, 3))
    for name in POOLING.canonical_names():
        found[f"pooling: {name}"] = (POOLING.build(name, size=2, stride=2), (2, 2, 4, 4))
    found["a whole cnnlab CNN (conv, BN, pooling, dropout, dense; eval)"] = (_custom_cnn(), (2, 1, 8, 8))
    return found


def _custom_cnn() -> nn.Module:
    from cnnlab.config import ConvBlock, ModelConfig
    from cnnlab.models.custom import build_custom

    cfg = ModelConfig(name="cnn", blocks=[ConvBlock(filters=3), ConvBlock(filters=4)], dense=[5], dropout=0.5)
    return build_custom(cfg, 1, (8, 8), 3).eval()


def relative_error(module: nn.Module, shape: tuple[int, ...], gen: torch.Generator, coords: int = 12) -> float:
    """max over sampled coordinates of the input and every parameter: |fd - autograd| / max(|fd|, |ad|)."""
    module = module.double()
    x = torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(module(x).shape, generator=gen, dtype=torch.float64)

    def loss() -> torch.Tensor:
        return (module(x) * weights).sum()

    tensors = [x] + [p for p in module.parameters()]
    grads = torch.autograd.grad(loss(), tensors)
    num, den = 0.0, 0.0
    with torch.no_grad():
        for t, g in zip(tensors, grads):
            flat, gflat = t.view(-1), g.reshape(-1)
            for i in torch.randperm(flat.numel(), generator=gen)[:coords].tolist():
                old = float(flat[i])
                flat[i] = old + EPS
                up = float(loss())
                flat[i] = old - EPS
                down = float(loss())
                flat[i] = old
                fd = (up - down) / (2 * EPS)
                num, den = max(num, abs(fd - float(gflat[i]))), max(den, abs(fd), abs(float(gflat[i])))
    return num / den if den else 0.0


def chain_rule(gen: torch.Generator) -> tuple[list[list], float]:
    """dL/dz of every layer of a 4-3-3-2 tanh network, by hand (dL/dz_l = W_{l+1}^T dL/dz_{l+1} * f'(z_l))
    and by autograd."""
    ws = [torch.randn(o, i, generator=gen, dtype=torch.float64).requires_grad_() for i, o in ((4, 3), (3, 3), (3, 2))]
    x, y = torch.randn(1, 4, generator=gen, dtype=torch.float64), torch.tensor([1])
    zs, a = [], x
    for k, w in enumerate(ws):
        z = a @ w.T
        z.retain_grad()
        zs.append(z)
        a = torch.tanh(z) if k < len(ws) - 1 else z
    nn.functional.cross_entropy(a, y).backward()
    with torch.no_grad():
        by_hand = [torch.softmax(zs[-1], 1) - nn.functional.one_hot(y, 2).double()]  # dCE/dz = p - y
        for k in range(len(ws) - 2, -1, -1):
            by_hand.insert(0, (by_hand[0] @ ws[k + 1]) * (1 - torch.tanh(zs[k]) ** 2))
    rows, worst = [], 0.0
    for k, (h, z) in enumerate(zip(by_hand, zs)):
        rule = "p - y" if k == len(ws) - 1 else f"(dL/dz{k + 2} W{k + 2}) * (1 - tanh²(z{k + 1}))"
        diff = float((h - z.grad).abs().max())
        worst = max(worst, diff)
        rows.append([f"z{k + 1}", rule, " ".join(f"{v:+.4f}" for v in h[0].tolist()),
                     " ".join(f"{v:+.4f}" for v in z.grad[0].tolist()), f"{diff:.1e}"])
    return rows, worst


def gradients(seed: int, data: str) -> dict:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    errors = {name: relative_error(m, shape, gen) for name, (m, shape) in layers().items()}
    rows, chain = chain_rule(gen)
    return {"scalars": {"max_relative_error": max(errors.values()), "chain_rule_error": chain,
                        "layer_types": float(len(errors))},
            "tables": {"finite differences against autograd (float64)": {
                           "header": ["layer", "relative error"], "rows": [[k, f"{v:.1e}"] for k, v in errors.items()]},
                       "the chain rule by hand, layer by layer (4-3-3-2 tanh network, cross-entropy)": {
                           "header": ["signal", "rule", "by hand", "autograd", "max difference"], "rows": rows}}}
