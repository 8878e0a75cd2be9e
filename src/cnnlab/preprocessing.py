"""The preprocessing a model carries with it: input channels and size, normalisation, interpolation.

It is stored in every run directory (``preprocessing.json``, and in ``model.safetensors``' metadata)
and applied inside the model's forward (``cnnlab.models.image_model.ImageModel``).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from cnnlab import files


@dataclass
class Preprocessing:
    channels: int
    size: tuple[int, int]  # (H, W)
    mean: list[float] = field(default_factory=lambda: [0.5])
    std: list[float] = field(default_factory=lambda: [0.5])
    interpolation: str = "bilinear"
    # regression trained on standardised targets: their training-split mean and std (None: raw targets)
    target_mean: Optional[float] = None
    target_std: Optional[float] = None

    def __post_init__(self) -> None:
        self.size = tuple(self.size)
        if len(self.mean) == 1:
            self.mean = self.mean * self.channels
        if len(self.std) == 1:
            self.std = self.std * self.channels

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: Path) -> None:
        files.write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> "Preprocessing":
        return cls(**json.loads(path.read_text()))
