"""Convolution arithmetic, exactly: output sizes, parameter counts, receptive fields and FLOPs, each from its
formula and measured on the layers themselves (PyTorch's modules, torchvision's VGG-16, torch's FLOP counter)."""
from __future__ import annotations

import itertools

import torch
from torch import nn


def out_size(n: int, k: int, p: int, s: int, d: int = 1) -> int:
    """floor((n + 2p - d(k - 1) - 1) / s) + 1: with d = 1, floor((n + 2p - k) / s) + 1."""
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def output_sizes(seed: int, data: str, sizes=(7, 8, 13, 16, 28, 31)) -> dict:
    """Every (n, k, p, s, dilation) of a grid through nn.Conv2d and nn.MaxPool2d against the formula."""
    x_cases, wrong, rows = 0, 0, []
    for n, k, p, s, d in itertools.product(sizes, (1, 2, 3, 5, 7), (0, 1, 2, 3), (1, 2, 3), (1, 2, 3)):
        if n + 2 * p < d * (k - 1) + 1:
            continue  # the window does not fit: the layers refuse it
        x = torch.zeros(1, 1, n, n)
        layers = [nn.Conv2d(1, 1, k, s, p, d)] + ([nn.MaxPool2d(k, s, p, d)] if 2 * p <= k else [])
        for layer in layers:
            got, want = layer(x).shape[-1], out_size(n, k, p, s, d)
            x_cases, wrong = x_cases + 1, wrong + (got != want)
            if got != want and len(rows) < 20:
                rows.append([type(layer).__name__, n, k, p, s, d, got, want])
    return {"scalars": {"cases": float(x_cases), "mismatches": float(wrong)},
            "tables": {"mismatches (layer, n, k, p, s, dilation, measured, formula)": {
                "header": ["layer", "n", "k", "p", "s", "d", "measured", "formula"], "rows": rows}} if rows else {}}


def receptive_field(layers: list[nn.Module], side: int) -> int:
    """The receptive field of the centre output unit, measured: the extent of the input pixels its
    gradient reaches through a copy of the layers' geometry with positive weights and no non-linearity
    (max pooling becomes average pooling: the same window, every input reached)."""
    geometry = []
    for layer in layers:
        if isinstance(layer, nn.Conv2d):
            conv = nn.Conv2d(1, 1, layer.kernel_size, layer.stride, layer.padding, layer.dilation, bias=False)
            nn.init.constant_(conv.weight, 1.0)
            geometry.append(conv)
        elif isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d)):
            geometry.append(nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding))
    x = torch.zeros(1, 1, side, side, dtype=torch.float64, requires_grad=True)
    out = nn.Sequential(*geometry).double()(x)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    rows = (x.grad[0, 0].abs().sum(1) > 0).nonzero()
    return int(rows.max() - rows.min() + 1)


def rf_formula(layers: list[nn.Module]) -> list[int]:
    """r_l = r_(l-1) + (k_l - 1) d_l j_(l-1), j_l = j_(l-1) s_l (Araujo et al. 2019), after each layer."""
    r, j, out = 1, 1, []
    for layer in layers:
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            k, s = _first(layer.kernel_size), _first(layer.stride)
            d = _first(getattr(layer, "dilation", 1))
            r, j = r + (k - 1) * d * j, j * s
        out.append(r)
    return out


def _first(value) -> int:
    return int(value[0] if isinstance(value, tuple) else value)


def stacks(seed: int, data: str, channels: int = 64) -> dict:
    """Three 3x3 convolutions against one 7x7 (C channels in and out): receptive field and parameters."""
    three = [nn.Conv2d(channels, channels, 3, padding=1, bias=False) for _ in range(3)]
    one = [nn.Conv2d(channels, channels, 7, padding=3, bias=False)]
    c2 = channels ** 2
    rf3, rf7 = receptive_field(three, 31), receptive_field(one, 31)
    p3, p7 = (sum(p.numel() for m in layers for p in m.parameters()) / c2 for layers in (three, one))
    grid_errors = sum(abs(sum(p.numel() for p in nn.Conv2d(ci, co, k).parameters()) - (k * k * ci * co + co))
                      for k, ci, co in itertools.product((1, 3, 5, 7), (1, 3, 16), (1, 8, 64)))
    return {"scalars": {"rf_three_3x3": rf3, "rf_one_7x7": rf7, "rf_gap": abs(rf3 - 7) + abs(rf7 - 7),
                        "params_three_3x3_per_c2": p3, "params_one_7x7_per_c2": p7,
                        "params_gap": abs(p3 - 27) + abs(p7 - 49), "param_formula_error": float(grid_errors)}}


def vgg16(seed: int, data: str, side: int = 224) -> dict:
    """torchvision's VGG-16 without weights: its parameters and fc6's share, and per layer the receptive
    field (formula against measured) and the FLOPs (torch's counter against 2 k^2 C_in C_out H W)."""
    from torchvision.models import vgg16 as build

    with torch.device("meta"):  # shapes only: no memory, no initialisation, no arithmetic
        model = build(weights=None)
    total = sum(p.numel() for p in model.parameters())
    fc6 = sum(p.numel() for p in model.classifier[0].parameters())
    feats = list(model.features)
    formula_rf = rf_formula(feats)
    rows, flop_error, rf_error, size = [], 0, 0, side
    for i, layer in enumerate(feats):
        if not isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
            continue
        k, s, p = _first(layer.kernel_size), _first(layer.stride), _first(layer.padding)
        out, flops = out_size(size, k, p, s), _flops(layer, size)
        if isinstance(layer, nn.Conv2d):
            flop_error += abs(flops - 2 * k * k * layer.in_channels * layer.out_channels * out * out)
        measured = receptive_field(feats[: i + 1], 2 * formula_rf[i] + 1)
        rf_error += abs(measured - formula_rf[i])
        rows.append([i, type(layer).__name__, f"{size}->{out}", formula_rf[i], measured, f"{flops / 1e9:.3f}"])
        size = out
    return {"scalars": {"parameters": float(total), "parameter_gap": abs(total - 138_357_544),
                        "fc6_share": fc6 / total, "conv_flops_error": float(flop_error),
                        "receptive_field_error": float(rf_error), "receptive_field": float(formula_rf[-1])},
            "tables": {f"VGG-16 layers at {side}x{side}": {
                "header": ["layer", "type", "size", "receptive field (formula)", "receptive field (measured)",
                           "GFLOPs (torch)"], "rows": rows}}}


def _flops(layer: nn.Module, side: int) -> int:
    """torch.utils.flop_counter's count for one image through ``layer`` (0 for layers it does not count)."""
    from torch.utils.flop_counter import FlopCounterMode

    if not isinstance(layer, nn.Conv2d):
        return 0
    with FlopCounterMode(display=False) as counter:
        layer(torch.empty(1, layer.in_channels, side, side, device="meta"))
    return int(counter.get_total_flops())
