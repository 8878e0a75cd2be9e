"""What the convolution layers learned: first-layer filters, and feature maps before and after pooling."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.evaluation.plots import image_grid_png
from cnnlab.inference.predictor import Predictor

MAX_MAPS = 32


def conv_layers(predictor: Predictor) -> dict[str, nn.Module]:
    return {n: m for n, m in predictor.model.named_modules() if isinstance(m, nn.Conv2d)}


def pool_layers(predictor: Predictor) -> dict[str, nn.Module]:
    return {n: m for n, m in predictor.model.named_modules() if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d))}


def plot_features(predictor: Predictor, image, out_dir: Path, layer: Optional[str] = None) -> list[Path]:
    convs, pools = conv_layers(predictor), pool_layers(predictor)
    chosen = [layer] if layer else list(convs)[:1] + list(pools)[:2]
    unknown = [c for c in chosen if c not in convs and c not in pools]
    if unknown:
        raise CnnlabError(f"no convolution or pooling layer '{unknown[0]}'. Layers: {', '.join([*convs, *pools])}")
    out_dir.mkdir(parents=True, exist_ok=True)
    first_name, first = next(iter(convs.items()))
    filters = first.weight.detach()
    paths = [image_grid_png(filters.mean(1)[:MAX_MAPS], out_dir / "filters.png",
                            f"first-layer filters ({first_name}, {tuple(filters.shape[2:])} kernels)")]
    captured: dict[str, torch.Tensor] = {}
    hooks = []
    for name in chosen:
        module = convs.get(name) or pools.get(name)
        if name in pools:  # a pooling layer: show its input (before) and output (after)
            hooks.append(module.register_forward_pre_hook(lambda m, i, n=name: captured.__setitem__(f"{n}-before", i[0])))
        hooks.append(module.register_forward_hook(lambda m, i, o, n=name: captured.__setitem__(n, o)))
    x = predictor.preprocess(image).unsqueeze(0)
    with torch.no_grad():
        predictor.model.eval()(x)
    for h in hooks:
        h.remove()
    for key, maps in captured.items():
        label = key.replace("-before", " (before pooling)") if key.endswith("-before") else (
            f"{key} (after pooling)" if key in pools else key)
        safe = key.replace(".", "_")
        paths.append(image_grid_png(maps[0, :MAX_MAPS], out_dir / f"maps_{safe}.png",
                                    f"feature maps: {label}, {tuple(maps.shape[1:])}"))
    return paths
