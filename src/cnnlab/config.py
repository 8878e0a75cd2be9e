"""One typed, validated configuration: YAML in, CLI flags on top, resolved YAML out into every run.

Every leaf key has a unique name, so ``--lr 0.01`` and ``--optim.lr 0.01`` both work on the
command line; unknown keys are errors that list the valid ones.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cnnlab.errors import CnnlabError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ConvBlock(_Strict):
    """One convolution block: ``repeat`` convolutions (+BN +activation), then optional pooling."""

    filters: int = Field(gt=0)
    kernel: int = Field(3, gt=0)
    stride: int = Field(1, gt=0)
    padding: Union[Literal["same", "valid"], int] = "same"
    repeat: int = Field(1, gt=0)
    batch_norm: Optional[bool] = None  # None: the model's batch_norm
    pool: Optional[Literal["max", "avg", "none"]] = None  # None: the model's pool


class DataConfig(_Strict):
    path: Optional[str] = None
    val_split: float = Field(0.1, ge=0.0, lt=1.0)
    test_split: float = Field(0.0, ge=0.0, lt=1.0)
    batch_size: int = Field(64, gt=0)
    num_workers: int = Field(0, ge=0)
    cache: Literal["auto", "memory", "disk"] = "auto"
    cache_limit_mb: int = Field(2048, gt=0)
    target_column: Optional[str] = None  # CSV manifest column holding the label/target


class ModelConfig(_Strict):
    name: str = "cnn-small"
    activation: str = "relu"
    blocks: Optional[list[ConvBlock]] = None  # None: the preset's blocks
    batch_norm: bool = True
    pool: Literal["max", "avg", "none"] = "max"
    pool_size: int = Field(2, gt=0)
    pool_stride: Optional[int] = Field(None, gt=0)
    residual: bool = False
    head: Optional[Literal["flatten", "gap", "original"]] = None  # None: flatten (custom CNN), gap (backbones)
    dense: Optional[list[int]] = None  # None: [128] (custom CNN), [] (backbones)
    dropout: float = Field(0.25, ge=0.0, lt=1.0)
    input_size: Optional[int] = Field(None, gt=0)  # None: from the model or the data
    in_channels: Optional[Literal[1, 3]] = None  # None: from the model or the data
    weights: Optional[str] = None  # imagenet | none | FILE | RUN_DIR; None: imagenet for backbones, none for CNNs

    @field_validator("dense", mode="before")
    @classmethod
    def _one_layer_as_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, int) else value


class OptimConfig(_Strict):
    optimizer: Literal["sgd", "adam", "adamw", "rmsprop"] = "adam"
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = False
    schedule: Literal["none", "step", "cosine", "plateau", "onecycle"] = "none"
    step_size: int = Field(10, gt=0)
    gamma: float = Field(0.1, gt=0.0, le=1.0)


class TrainConfig(_Strict):
    epochs: int = Field(10, gt=0)
    mode: Literal["minibatch", "stochastic", "batch"] = "minibatch"
    early_stopping: bool = False
    patience: int = Field(3, ge=0)
    min_delta: float = Field(0.0, ge=0.0)
    monitor: Literal["val_loss", "val_acc", "train_loss"] = "val_loss"
    accelerator: str = "auto"
    devices: Union[int, str] = "auto"
    distributed: str = "auto"  # Lightning strategy: auto, ddp, fsdp, ...
    num_nodes: int = Field(1, gt=0)
    precision: str = "32-true"
    deterministic: bool = False  # deterministic algorithms only (cuDNN deterministic, no benchmark, cuBLAS workspace)
    progress: bool = True
    gradient_every: int = Field(0, ge=0)  # record per-layer gradient norms every N steps (0: off)
    max_time: Optional[float] = Field(None, gt=0)  # seconds of training at most (a budget), then stop


class TransferConfig(_Strict):
    """How a pretrained backbone is reused: which parts train, and at what learning rate."""

    strategy: Literal["auto", "feature-extract", "fine-tune", "full", "two-phase"] = "auto"
    unfreeze: int = Field(2, ge=0)  # top blocks/stages trained in fine-tune and two-phase
    backbone_lr_mult: float = Field(0.1, gt=0.0, le=1.0)  # backbone lr = lr x this
    head_epochs: Optional[int] = Field(None, gt=0)  # two-phase: head-only epochs; None: a third of them
    cache_features: bool = True  # frozen backbone, no augmentation: compute features once


class AugmentConfig(_Strict):
    """Training-time augmentation: a preset, with any operation set explicitly on top of it."""

    preset: Literal["none", "light", "standard", "strong"] = "none"
    rotation: Optional[float] = Field(None, ge=0.0, le=180.0)  # degrees, +/-
    translate: Optional[float] = Field(None, ge=0.0, lt=1.0)  # fraction of width/height, +/-
    zoom: Optional[tuple[float, float]] = None  # affine scale range, e.g. [0.9, 1.1]
    crop_scale: Optional[tuple[float, float]] = None  # random resized crop area range, within (0, 1]
    hflip: Optional[float] = Field(None, ge=0.0, le=1.0)  # probability
    vflip: Optional[float] = Field(None, ge=0.0, le=1.0)
    brightness: Optional[float] = Field(None, ge=0.0)
    contrast: Optional[float] = Field(None, ge=0.0)
    saturation: Optional[float] = Field(None, ge=0.0)
    hue: Optional[float] = Field(None, ge=0.0, le=0.5)
    noise: Optional[float] = Field(None, ge=0.0, le=1.0)  # Gaussian noise std, in [0, 1] pixel units
    group: int = Field(8, gt=0)  # images that share one draw of random parameters
    # where batches are augmented: in the data loader (CPU), or on the model's device after the copy
    # there (GPU: the CPU only decodes); auto = the device when it is not the CPU
    where: Literal["auto", "loader", "device"] = "auto"

    @field_validator("zoom", "crop_scale")
    @classmethod
    def _ordered_range(cls, value, info):
        if value is None:
            return value
        low, high = value
        upper = 1.0 if info.field_name == "crop_scale" else 10.0
        if not 0 < low <= high <= upper:
            raise ValueError(f"must be [min, max] with 0 < min <= max <= {upper:g}")
        return value


class Config(_Strict):
    task: Literal["classification", "regression"] = "classification"
    seed: int = 0
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    transfer: TransferConfig = Field(default_factory=TransferConfig)

    def head_epochs(self) -> int:
        """Two-phase fine-tuning: the head-only epochs before the top blocks join (default: a third)."""
        return self.transfer.head_epochs or max(1, self.train.epochs // 3)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


_SECTIONS = ("data", "model", "optim", "train", "augment", "transfer")
# Flags people expect to type without the section, whose leaf name is generic.
_ALIASES = {"model": "model.name", "optimizer": "optim.optimizer", "augment": "augment.preset"}


def key_paths() -> dict[str, str]:
    """Leaf name -> dotted path for every key of the config (``lr`` -> ``optim.lr``)."""
    paths = {name: name for name in Config.model_fields if name not in _SECTIONS}
    for section in _SECTIONS:
        for name in Config.model_fields[section].annotation.model_fields:
            paths[name] = f"{section}.{name}"
    paths.update(_ALIASES)
    return paths


def all_keys() -> list[str]:
    return sorted(set(key_paths().values()))


def _resolve_key(key: str) -> str:
    key = key.replace("-", "_")
    paths = key_paths()
    if key in paths:
        return paths[key]
    if key in paths.values():
        return key
    valid = all_keys()
    close = difflib.get_close_matches(key, valid + list(paths), n=1)
    maybe = f" Did you mean '{close[0]}'?" if close else ""
    raise CnnlabError(f"unknown config key '{key}'.{maybe} Valid keys: {', '.join(valid)}")


def _set(tree: dict, dotted: str, value: Any) -> None:
    node = tree
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise CnnlabError(f"config key '{part}' must be a mapping, got {node!r}")
    node[leaf] = value


def _check_keys(tree: dict, prefix: str = "") -> None:
    """Reject unknown keys with the list of valid ones, before pydantic's longer message."""
    valid = set(all_keys())
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if dotted in _SECTIONS and isinstance(value, dict):
            _check_keys(value, prefix=f"{dotted}.")
        elif dotted not in valid:
            close = difflib.get_close_matches(dotted, sorted(valid), n=1)
            maybe = f" Did you mean '{close[0]}'?" if close else ""
            raise CnnlabError(f"unknown config key '{dotted}'.{maybe} Valid keys: {', '.join(sorted(valid))}")


def parse_value(text: str) -> Any:
    """A flag's value as YAML (``0.01``, ``true``, ``[64, 128]``); a bare ``64,128`` is a list."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and "," in value:
        return [parse_value(part.strip()) for part in value.split(",")]
    return value


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Build the config from an optional YAML file and ``{key: value}`` overrides (flag names)."""
    tree: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise CnnlabError(f"config file not found: {path}")
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise CnnlabError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(tree, dict):
            raise CnnlabError(f"config file {path} must hold a mapping of keys, got {type(tree).__name__}")
        _check_keys(tree)
    return with_overrides(tree, overrides)


def with_overrides(base: "Config | dict", overrides: dict[str, Any] | None) -> Config:
    """A config (or its tree) with ``{flag name: value}`` overrides applied and validated."""
    tree = base.model_dump(mode="json") if isinstance(base, Config) else base
    for key, value in (overrides or {}).items():
        _set(tree, _resolve_key(key), value)
    return validate(tree)


def validate(tree: dict) -> Config:
    _check_keys(tree)
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise CnnlabError(f"invalid value for '{where}': {err.get('input')!r} ({err['msg']})") from None
