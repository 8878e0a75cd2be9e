"""Model names -> builders. A model knows its own input size and normalisation."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from torch import nn

from cnnlab.config import Config
from cnnlab.models.custom import PRESETS, build_custom
from cnnlab.models.preprocess import ImageModel, Preprocessing
from cnnlab.registry import Registry


@dataclass
class ModelEntry:
    name: str
    description: str
    # (channels, size, mean, std) the model wants; None leaves channels/size to the data.
    input_spec: Callable[[Config], tuple[Optional[int], Optional[int], list[float], list[float]]]
    build: Callable[[Config, Preprocessing, int], nn.Module]
    default_channels: int = 3
    default_size: int = 224


MODELS: Registry = Registry("model")


def _register_presets() -> None:
    for name, preset in PRESETS.items():
        MODELS.register(name)(ModelEntry(
            name=name,
            description=preset.description,
            input_spec=lambda cfg: (cfg.model.in_channels, cfg.model.input_size, [0.5], [0.5]),
            build=lambda cfg, pre, n: build_custom(cfg.model, pre.channels, pre.size, n),
            default_channels=preset.channels,
            default_size=preset.size,
        ))


_register_presets()


def names() -> list[str]:
    return MODELS.names()


def resolve_preprocessing(cfg: Config, probed: Optional[tuple[tuple[int, int], int]] = None) -> Preprocessing:
    """The config's explicit values first, then the model's own, then what the data looks like."""
    entry: ModelEntry = MODELS.get(cfg.model.name)
    channels, side, mean, std = entry.input_spec(cfg)
    if channels is None:
        channels = probed[1] if probed else entry.default_channels
    size = (side, side) if side else (probed[0] if probed else (entry.default_size, entry.default_size))
    return Preprocessing(channels=channels, size=size, mean=mean, std=std)


def build_model(cfg: Config, pre: Preprocessing, num_outputs: int) -> ImageModel:
    entry: ModelEntry = MODELS.get(cfg.model.name)
    return ImageModel(entry.build(cfg, pre, num_outputs), pre)
