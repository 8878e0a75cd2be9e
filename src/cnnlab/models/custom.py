"""The custom CNN: convolution blocks declared in config, then a dense head.

``features`` (the convolutional part) is what transfers to another dataset; ``head`` (flatten or
global pooling, dense layers, output) is what gets replaced.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.config import ConvBlock, ModelConfig
from cnnlab.errors import ConfigError
from cnnlab.catalog.layers import ACTIVATIONS, POOLING, width_factor
from cnnlab.catalog.names import Head


@dataclass(frozen=True)
class Preset:
    blocks: tuple[dict, ...]
    overrides: dict  # model keys the preset sets unless the config sets them (plain values: they skip validation)
    channels: int = 1
    size: int = 28
    description: str = ""


PRESETS: dict[str, Preset] = {
    "cnn-small": Preset(
        blocks=({"filters": 32}, {"filters": 64}),
        overrides={},
        description="2 conv blocks (32, 64) + dense 128; fast on a CPU, ~99% on MNIST",
    ),
    "cnn-medium": Preset(
        blocks=({"filters": 32, "repeat": 2}, {"filters": 64, "repeat": 2}, {"filters": 128, "repeat": 2}),
        overrides={"head": Head.GAP.value},
        channels=3,
        size=32,
        description="3 double-conv blocks (32, 64, 128) + global average pooling",
    ),
    "lenet5": Preset(
        blocks=({"filters": 6, "kernel": 5}, {"filters": 16, "kernel": 5, "padding": "valid"}),
        overrides={"activation": "tanh", "pool": "avg", "batch_norm": False, "dense": [120, 84], "dropout": 0.0},
        description="LeCun et al. 1998: tanh, average pooling, dense 120-84",
    ),
    "cnn": Preset(blocks=(), overrides={}, description="fully declared in config (model.blocks)"),
}


def _padding(block: ConvBlock) -> int:
    if block.padding == "same":
        return block.kernel // 2
    if block.padding == "valid":
        return 0
    return int(block.padding)


class ConvUnit(nn.Sequential):
    def __init__(self, cin: int, cout: int, block: ConvBlock, stride: int, batch_norm: bool, activation: str):
        wide = cout * width_factor(activation)
        layers: list[nn.Module] = [nn.Conv2d(cin, wide, block.kernel, stride, _padding(block), bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(wide))
        layers.append(ACTIVATIONS.get(activation)(wide))
        super().__init__(*layers)


class ConvStage(nn.Module):
    """``repeat`` conv units, an optional residual shortcut around them, then optional pooling."""

    def __init__(self, cin: int, block: ConvBlock, cfg: ModelConfig):
        super().__init__()
        bn = cfg.batch_norm if block.batch_norm is None else block.batch_norm
        units = [ConvUnit(cin if i == 0 else block.filters, block.filters, block,
                          block.stride if i == 0 else 1, bn, cfg.activation) for i in range(block.repeat)]
        self.body = nn.Sequential(*units)
        self.shortcut: nn.Module | None = None
        if cfg.residual:
            same = cin == block.filters and block.stride == 1
            self.shortcut = nn.Identity() if same else nn.Conv2d(cin, block.filters, 1, block.stride, bias=False)
        pool = block.pool or cfg.pool
        self.pool = POOLING.get(pool)(cfg.pool_size, cfg.pool_stride or cfg.pool_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        if self.shortcut is not None:
            shortcut = self.shortcut(x)
            if shortcut.shape != y.shape:  # 'valid' padding shrinks the body's output
                dh, dw = shortcut.shape[-2] - y.shape[-2], shortcut.shape[-1] - y.shape[-1]
                shortcut = shortcut[..., dh // 2: dh // 2 + y.shape[-2], dw // 2: dw // 2 + y.shape[-1]]
            y = y + shortcut
        return self.pool(y)


def dense_head(in_features: int, cfg: ModelConfig, num_outputs: int, pool: str) -> nn.Sequential:
    """Flatten/global-pool, dense layers with the activation and dropout, then the output layer."""
    layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()] if pool == Head.GAP else [nn.Flatten()]
    width = in_features
    for units in cfg.dense:
        layers += [nn.Linear(width, units * width_factor(cfg.activation)), ACTIVATIONS.get(cfg.activation)(units)]
        if cfg.dropout > 0:
            layers.append(nn.Dropout(cfg.dropout))
        width = units
    # Output: logits (softmax is applied by the loss and at prediction) or a linear regression value.
    layers.append(nn.Linear(width, num_outputs))
    return nn.Sequential(*layers)


class CustomCNN(nn.Module):
    def __init__(self, features: nn.Sequential, head: nn.Sequential):
        super().__init__()
        self.features, self.head = features, head
        self.block_names = [[str(i)] for i in range(len(features))]

    def blocks(self) -> list[list[nn.Module]]:
        """The convolution stages in order: what fine-tuning unfreezes from the top."""
        return [[stage] for stage in self.features]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def effective_config(cfg: ModelConfig) -> ModelConfig:
    """The config with the preset's blocks and settings filled in where the user set nothing."""
    preset = PRESETS[cfg.name]
    given = cfg.model_fields_set
    updates = {k: v for k, v in preset.overrides.items() if k not in given}
    if cfg.head in (None, Head.ORIGINAL):
        updates.setdefault("head", Head.FLATTEN.value)  # model_copy: no validation to make it plain
    if cfg.dense is None:
        updates.setdefault("dense", [128])
    if cfg.blocks is None:
        if not preset.blocks:
            raise ConfigError(f"model '{cfg.name}' needs model.blocks in the config, e.g. blocks: [{{filters: 32}}, {{filters: 64}}]")
        updates["blocks"] = [ConvBlock(**b) for b in preset.blocks]
    return cfg.model_copy(update=updates)


def build_custom(cfg: ModelConfig, channels: int, size: tuple[int, int], num_outputs: int) -> CustomCNN:
    cfg = effective_config(cfg)
    stages, cin = [], channels
    for block in cfg.blocks:
        stages.append(ConvStage(cin, block, cfg))
        cin = block.filters
    features = nn.Sequential(*stages)
    try:
        with torch.no_grad():
            out = features.eval()(torch.zeros(1, channels, *size))
    except RuntimeError as exc:
        raise ConfigError(
            f"input size {size[0]}x{size[1]} is too small for {len(cfg.blocks)} conv blocks with pooling "
            f"({str(exc).splitlines()[0]}): use a larger model.input_size or fewer blocks"
        ) from None
    features.train()
    in_features = out.shape[1] if cfg.head == Head.GAP else out[0].numel()
    return CustomCNN(features, dense_head(in_features, cfg, num_outputs, cfg.head))
