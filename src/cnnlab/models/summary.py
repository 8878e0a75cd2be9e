"""A Keras-style layer table: each layer's output shape and parameter count, and the totals."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class LayerRow:
    name: str
    kind: str
    output_shape: tuple
    params: int
    trainable: int


@dataclass
class Summary:
    rows: list[LayerRow]
    total: int
    trainable: int
    input_shape: tuple

    @property
    def frozen(self) -> int:
        return self.total - self.trainable


def _is_leaf(module: nn.Module) -> bool:
    return next(module.children(), None) is None


def summarize(model: nn.Module, input_shape: tuple[int, ...]) -> Summary:
    """Run one forward pass on zeros of ``(1, *input_shape)`` and record every leaf layer."""
    rows: list[LayerRow] = []
    hooks = []

    def record(name: str):
        def hook(module: nn.Module, _inputs, output) -> None:
            out = output[0] if isinstance(output, (tuple, list)) else output
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else ()
            params = sum(p.numel() for p in module.parameters(recurse=False))
            trainable = sum(p.numel() for p in module.parameters(recurse=False) if p.requires_grad)
            rows.append(LayerRow(name, type(module).__name__, shape, params, trainable))
        return hook

    for name, module in model.named_modules():
        if name and (_is_leaf(module) or any(True for _ in module.parameters(recurse=False))):
            hooks.append(module.register_forward_hook(record(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return Summary(rows, total, trainable, tuple(input_shape))
