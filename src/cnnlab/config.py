"""One typed, validated configuration: YAML in, CLI flags on top, resolved YAML out into every run.

Every leaf key has a unique name, so ``--lr 0.01`` and ``--optim.lr 0.01`` both work on the
command line; unknown keys are errors that list the valid ones.
"""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any, Literal, Optional, Union, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cnnlab.catalog.augmentations import PRESETS
from cnnlab.errors import ConfigError, UnknownName
from cnnlab.catalog.layers import ACTIVATIONS, POOLING
from cnnlab.catalog.loggers import LOGGERS
from cnnlab.migrations import SCHEMA_VERSION, migrate
from cnnlab.catalog.names import Accelerator, Distributed, Head, Monitor, Precision, Task, parse
from cnnlab.catalog.optim import OPTIMIZERS, SCHEDULES
from cnnlab.catalog.registry import Registry, did_you_mean, suggest
from cnnlab.catalog.strategies import NAMES as STRATEGY_NAMES

# The keys whose values are registry names: validated by, and documented from, the registry itself.
NAMED: dict[str, Registry] = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "pool": POOLING,
                              "activation": ACTIVATIONS, "preset": PRESETS, "logger": LOGGERS}


def _named(value: Any, info) -> Any:
    """A registry-named key's value must be a registered name (None: the default applies)."""
    if value is None:
        return value
    try:
        return NAMED[info.field_name].check(value)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


# The keys whose values are names of the catalogue (cnnlab.catalog.names), with the words their error names them by.
NAMED_KINDS: dict[str, tuple[type[Enum], str]] = {
    "accelerator": (Accelerator, "--accelerator"), "distributed": (Distributed, "--distributed strategy"),
    "precision": (Precision, "--precision"), "monitor": (Monitor, "--monitor"), "head": (Head, "--head"),
    "task": (Task, "--task")}


def _kind(value: Any, info) -> Any:
    """A catalogue-named key's value as its member; an unknown one is the UnknownName that lists them all
    (raised through pydantic as it is, so the message is the same at load time and everywhere else)."""
    if value is None or isinstance(value, Enum):
        return value
    kind, what = NAMED_KINDS[info.field_name]
    return parse(kind, value, what)


class _Strict(BaseModel):
    # A catalogue name is kept as its plain string (equal to its member): a config's values travel into
    # checkpoints, which load with torch's weights_only and take no cnnlab class.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_enum_values=True)


class ConvBlock(_Strict):
    """One convolution block: ``repeat`` convolutions (+BN +activation), then optional pooling."""

    filters: int = Field(gt=0, description='output channels of each convolution')
    kernel: int = Field(3, gt=0, description='kernel side in pixels')
    stride: int = Field(1, gt=0, description='convolution stride')
    padding: Union[Literal["same", "valid"], int] = Field(
        "same", description='same (keep the size), valid (none) or pixels')
    repeat: int = Field(1, gt=0, description='convolutions in the block before pooling')
    batch_norm: Optional[bool] = Field(None, description="batch normalisation (default: the model's)")
    pool: Optional[str] = Field(None, description="pooling (default: the model's)")

    _check_pool = field_validator("pool")(_named)


class DataConfig(_Strict):
    path: Optional[str] = Field(
        None, description='the dataset: a folder of class sub-folders (optionally train/ val/ test/) or a CSV manifest')
    val_split: float = Field(
        0.1, ge=0.0, lt=1.0, description='share of the data held out for validation when no val/ folder is given')
    test_split: float = Field(
        0.1, ge=0.0, lt=1.0, description='share held out for testing when no split is given (0: none, and the '
                                         'headline is on the validation images that also select the model)')
    train_images: Optional[int] = Field(
        None, ge=1, description='train on this many of the training images (a seeded, stratified subset; learning '
                                'curves and small-data experiments); validation and test images are unchanged')
    batch_size: int = Field(64, gt=0, description='images per step (and per chunk in batch mode)')
    num_workers: int = Field(0, ge=0, description='data loader worker processes (0: the main process)')
    cache: Literal["auto", "memory", "disk", "none"] = Field(
        "auto", description='decoded images: in memory, in the image cache on disk ($CNNLAB_CACHE, else '
                            '~/.cache/cnnlab: decoded once, memory-mapped), none (decoded from the files every epoch), '
                            'or auto (memory when they fit under cache_limit_mb, else disk)')
    decode: Literal["auto", "cpu", "device"] = Field(
        "auto", description='where JPEGs are decoded and resized: cpu, device (a CUDA GPU, in batches; the CPU when '
                            'there is none), or auto (the GPU when training on one)')
    cache_limit_mb: int = Field(2048, gt=0, description='largest decoded dataset kept in memory with cache auto, in MB')
    target_column: Optional[str] = Field(None, description='CSV manifest column holding the label or target')
    sampler: Literal["shuffle", "balanced"] = Field(
        "shuffle", description='training order: shuffle, or balanced (each class drawn equally often: rare classes repeat)')
    standardize: bool = Field(
        True, description='regression: train on standardised targets (mean and std kept in the run, undone at prediction)')

    @model_validator(mode="after")
    def _splits_leave_training_images(self) -> "DataConfig":
        if self.val_split + self.test_split >= 1:
            raise ValueError(f"val_split {self.val_split:g} + test_split {self.test_split:g} leave no training "
                             f"images: their sum must be below 1 (e.g. 0.1 and 0.1)")
        return self


class ModelConfig(_Strict):
    name: str = Field("cnn-small", description='model to build (see: cnnlab models)')
    activation: str = Field("relu", description='activation function of every layer')
    blocks: Optional[list[ConvBlock]] = Field(
        None, description="the custom CNN's convolution blocks (default: the preset's)")
    batch_norm: bool = Field(True, description="batch normalisation after each convolution")
    pool: str = Field("max", description="pooling after each block")
    pool_size: int = Field(2, gt=0, description='pooling window')
    pool_stride: Optional[int] = Field(None, gt=0, description='pooling stride (default: the window)')
    residual: bool = Field(False, description='skip connections around each block')
    head: Optional[Head] = Field(
        None, description="flatten (custom CNN), gap (global average pooling, backbones) or original (VGG-16's own classifier)")
    dense: Optional[list[int]] = Field(
        None, description='fully connected layers before the output (default: [128] for CNNs, none for backbones)')
    dropout: float = Field(0.25, ge=0.0, lt=1.0, description='dropout before each dense layer and the output')
    input_size: Optional[int] = Field(
        None, gt=0, description="image side in pixels (default: the model's or the data's)")
    in_channels: Optional[Literal[1, 3]] = Field(
        None, description="1 (grayscale) or 3 (RGB) (default: the model's or the data's)")
    weights: Optional[str] = Field(
        None, description='starting weights: imagenet, none, a .safetensors/.pth file or a run directory (default: imagenet for backbones)')

    _check_names = field_validator("activation", "pool")(_named)
    _check_head = field_validator("head", mode="before")(_kind)

    @field_validator("dense", mode="before")
    @classmethod
    def _one_layer_as_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, int) else value


class OptimConfig(_Strict):
    optimizer: str = Field("adam", description='optimiser')
    lr: Union[float, Literal["auto"], None] = Field(
        None, description="learning rate, or auto (Lightning's LR finder picks it; cnnlab lr-find shows the curve) "
                          "(default: 0.003 for models trained from scratch, 0.001 for pretrained backbones)")
    weight_decay: float = Field(0.0, ge=0.0, description='L2 weight decay')
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description='momentum (sgd, rmsprop)')
    nesterov: bool = Field(False, description='Nesterov momentum (sgd)')
    schedule: Optional[str] = Field(
        None, description="learning-rate schedule (default: onecycle; cosine for two-phase fine-tuning, whose added "
                          "parameter group one-cycle cannot follow)")
    step_size: int = Field(10, gt=0, description='epochs between step-schedule decays')
    gamma: float = Field(0.1, gt=0.0, le=1.0, description='decay factor of the step and plateau schedules')

    class_weights: Literal["none", "auto"] = Field(
        "none", description='classification: auto weighs each class in the loss by its inverse frequency')
    label_smoothing: Optional[float] = Field(
        None, ge=0.0, lt=1.0, description='classification: the share of each training target spread over all classes '
                                          '(Szegedy et al. 2016; validation and test losses stay unsmoothed) '
                                          '(default: 0.1 from scratch, 0 for pretrained backbones)')
    ema: Optional[float] = Field(
        None, description='decay of an exponential moving average of the weights and BatchNorm statistics, updated '
                          'every step (e.g. 0.995; 0: off; it spans ~1/(1-decay) steps: give a run several) '
                          '(default: off). With it the averaged weights are what '
                          'is validated and saved: the best checkpoint and model.safetensors, so calibration, '
                          'evaluate, predict and export; checkpoints keep the training weights too, for --resume')

    _check_names = field_validator("optimizer", "schedule")(_named)

    @field_validator("ema")
    @classmethod
    def _decay(cls, value: Any) -> Any:
        if value is not None and not 0 <= value < 1:
            raise ValueError("must be a decay in [0, 1), such as 0.995 (each step keeps that share of the "
                             "average), or 0 for no average")
        return value

    @field_validator("lr")
    @classmethod
    def _positive_lr(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
            raise ValueError("must be greater than 0")
        return value


class TrainConfig(_Strict):
    epochs: Optional[int] = Field(
        None, gt=0, description='passes over the training set (default: chosen for the data size, about 900 steps '
                                'in 5 to 30 epochs; 1,600 in up to 80 for regression)')
    mode: Literal["minibatch", "stochastic", "batch"] = Field(
        "minibatch", description='gradient descent: minibatch, stochastic (one image a step) or batch (one exact full-batch step an epoch)')
    early_stopping: bool = Field(False, description='stop when the monitored loss stops improving')
    patience: int = Field(3, ge=0, description='epochs without improvement before early stopping')
    min_delta: float = Field(0.0, ge=0.0, description='smallest change that counts as an improvement')
    monitor: Monitor = Field(
        Monitor.VAL_LOSS.value, description='metric for the best checkpoint and early stopping')
    accelerator: Accelerator = Field(Accelerator.AUTO.value, description='cpu, gpu (cuda) or auto: a GPU when there is one')
    devices: Union[int, str] = Field(
        "auto", description='processes per machine: GPUs, or CPU processes with --accelerator cpu (auto: every GPU, or 1 CPU process)')
    distributed: Distributed = Field(
        Distributed.AUTO.value, description='auto, or ddp: one process per device, gradients averaged (gloo on the CPU, NCCL on GPUs)')
    num_nodes: int = Field(1, gt=0, description='machines to train on (launched by torchrun or SLURM)')
    precision: Precision = Field(
        Precision.FULL.value, description='32-true, bf16-mixed (GPUs since Ampere, and CPUs) or 16-mixed (GPUs)')
    channels_last: Optional[bool] = Field(
        None, description='NHWC memory layout (tensor cores); default: on for the custom CNNs on the CPU, where it '
                          'measured faster (benchmarks/cpu_speed.py), else off')
    compile: bool = Field(False, description='torch.compile the model (the first steps take longer while it compiles)')
    deterministic: bool = Field(
        False, description='deterministic algorithms only (cuDNN deterministic, no benchmark, cuBLAS workspace)')
    progress: bool = Field(True, description='show a progress bar')
    gradient_every: int = Field(0, ge=0, description='record per-layer gradient norms every N steps (0: off)')
    max_time: Optional[float] = Field(None, gt=0, description='seconds of training at most (a budget), then stop')
    calibrate: bool = Field(
        True, description='classification: fit temperature scaling on the validation split after training')
    logger: str = Field(
        "csv", description='experiment tracking besides metrics.csv: csv (nothing more), tensorboard, mlflow (a local '
                           'store under the run) or wandb')

    _check_logger = field_validator("logger")(_named)
    _check_kinds = field_validator("monitor", "accelerator", "distributed", "precision", mode="before")(_kind)

    @field_validator("devices", mode="before")
    @classmethod
    def _count_or_auto(cls, value: Any) -> Any:
        count = int(value) if isinstance(value, str) and value.isdigit() else value
        if count != "auto" and type(count) is not int:  # how many this machine has: checked when training
            raise ConfigError(f"--devices must be a number or auto, got '{value}'")
        return count


class TransferConfig(_Strict):
    """How a pretrained backbone is reused: which parts train, and at what learning rate."""

    strategy: Literal[STRATEGY_NAMES] = Field(  # the names of cnnlab.catalog.strategies
        "auto", description=f'how a pretrained backbone trains: {", ".join(STRATEGY_NAMES[1:])}, or auto')
    unfreeze: int = Field(2, ge=0, description='top blocks trained in fine-tune and two-phase')
    backbone_lr_mult: float = Field(0.1, gt=0.0, le=1.0, description='backbone learning rate = lr x this')
    head_epochs: Optional[int] = Field(None, gt=0, description='two-phase: head-only epochs first (default: a third)')
    cache_features: bool = Field(True, description='frozen backbone, no augmentation: compute its features once')


class AugmentConfig(_Strict):
    """Training-time augmentation: a preset, with any operation set explicitly on top of it."""

    preset: Optional[str] = Field(
        None, description='augmentation preset; every operation below goes on top of it (default: light for models '
                          'trained from scratch, none for pretrained backbones)')
    rotation: Optional[float] = Field(None, ge=0.0, le=180.0, description='random rotation, degrees +/-')
    translate: Optional[float] = Field(None, ge=0.0, lt=1.0, description='random shift, fraction of width/height +/-')
    zoom: Optional[tuple[float, float]] = Field(None, description='random scale range, e.g. [0.9, 1.1]')
    crop_scale: Optional[tuple[float, float]] = Field(None, description='random resized crop area range, within (0, 1]')
    elastic: Optional[tuple[float, float]] = Field(
        None, description='elastic distortion alpha,sigma, fractions of the shorter side: a random displacement field '
                          'smoothed by a Gaussian of sigma, scaled by alpha (Simard et al. 2003: 1.2,0.14, i.e. 34 '
                          'and 4 pixels on 28x28 digits)')
    hflip: Optional[float] = Field(None, ge=0.0, le=1.0, description='horizontal flip probability')
    vflip: Optional[float] = Field(None, ge=0.0, le=1.0, description='vertical flip probability')
    brightness: Optional[float] = Field(None, ge=0.0, description='brightness jitter')
    contrast: Optional[float] = Field(None, ge=0.0, description='contrast jitter')
    saturation: Optional[float] = Field(None, ge=0.0, description='saturation jitter (RGB)')
    hue: Optional[float] = Field(None, ge=0.0, le=0.5, description='hue jitter (RGB)')
    noise: Optional[float] = Field(None, ge=0.0, le=1.0, description='Gaussian noise std, in [0, 1] pixel units')
    group: int = Field(8, gt=0, description='images that share one draw of random parameters')
    # where batches are augmented: in the data loader (CPU), or on the model's device after the copy
    # there (GPU: the CPU only decodes); auto = the device when it is not the CPU
    where: Literal["auto", "loader", "device"] = Field(
        "auto", description='augment in the data loader (CPU) or on the device after the copy; auto: the device when not the CPU')

    _check_preset = field_validator("preset")(_named)

    @field_validator("elastic")
    @classmethod
    def _elastic(cls, value):
        # a larger sigma: the blur's kernel (8 sigma + 1) outgrows the reflect padding the image allows
        if value is not None and not (value[0] >= 0 and 0 < value[1] <= 0.2):
            raise ValueError("must be [alpha, sigma] with alpha >= 0 and 0 < sigma <= 0.2 (fractions of the side)")
        return value

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
    task: Task = Field(
        Task.CLASSIFICATION.value, description='classification (softmax) or regression (one linear output)')
    seed: int = Field(0, description='seed of the split, initialisation, order and augmentation')
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    transfer: TransferConfig = Field(default_factory=TransferConfig)

    _check_task = field_validator("task", mode="before")(_kind)

    @model_validator(mode="after")
    def _classification_only(self) -> "Config":
        if self.task == Task.REGRESSION:
            if self.optim.class_weights != "none":
                raise ValueError("class_weights weighs classes: it applies to classification, not regression "
                                 "(drop --class-weights, or use --task classification)")
            if self.optim.label_smoothing:
                raise ValueError("label_smoothing spreads a class target over the classes: it applies to "
                                 "classification, not regression (drop --label-smoothing)")
            if self.data.sampler != "shuffle":
                raise ValueError("sampler balanced draws classes equally: it applies to classification, not "
                                 "regression (drop --sampler)")
        return self

    def head_epochs(self) -> int:
        """Two-phase fine-tuning: the head-only epochs before the top blocks join (default: a third)."""
        return self.transfer.head_epochs or max(1, self.train.epochs // 3)

    def to_yaml(self) -> str:
        """The config as a run directory keeps it: with its schema version first."""
        return yaml.safe_dump({"schema_version": SCHEMA_VERSION, **self.model_dump(mode="json")}, sort_keys=False)


_SECTIONS = ("data", "model", "optim", "train", "augment", "transfer")
# Flags people expect to type without the section, whose leaf name is generic.
ALIASES = {"model": "model.name", "optimizer": "optim.optimizer", "augment": "augment.preset"}


def key_paths() -> dict[str, str]:
    """Leaf name -> dotted path for every key of the config (``lr`` -> ``optim.lr``)."""
    paths = {name: name for name in Config.model_fields if name not in _SECTIONS}
    for section in _SECTIONS:
        for name in Config.model_fields[section].annotation.model_fields:
            paths[name] = f"{section}.{name}"
    paths.update(ALIASES)
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
    close = suggest(key, sorted({*paths, *paths.values()}), first=tuple(ALIASES))
    maybe = did_you_mean([f"--{n.replace('_', '-')}" for n in close])
    raise UnknownName(f"unknown flag '--{key.replace('_', '-')}'.{maybe} Every flag: cnnlab train --help (or cnnlab config)")


def _set(tree: dict, dotted: str, value: Any) -> None:
    node = tree
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"config key '{part}' must be a mapping, got {node!r}")
    node[leaf] = value


def _check_keys(tree: dict, prefix: str = "") -> None:
    """Reject unknown keys with the list of valid ones, before pydantic's longer message."""
    valid = set(all_keys())
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if dotted in _SECTIONS and isinstance(value, dict):
            _check_keys(value, prefix=f"{dotted}.")
        elif dotted not in valid:
            maybe = did_you_mean([repr(c) for c in suggest(dotted, sorted(valid))])
            raise UnknownName(f"unknown config key '{dotted}'.{maybe} Every key: cnnlab config")


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None, run_file: bool = False) -> Config:
    """Build the config from an optional YAML file and ``{key: value}`` overrides (flag names); ``run_file``:
    the file is a run directory's config.yaml (an unversioned one is version 1)."""
    tree: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            tree = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"config file {path} must hold a mapping of keys, got {type(tree).__name__}")
        tree = migrate(tree, 1 if run_file else SCHEMA_VERSION)
        _check_keys(tree)
    return with_overrides(tree, overrides)


def with_overrides(base: "Config | dict", overrides: dict[str, Any] | None) -> Config:
    """A config (or its tree) with ``{flag name: value}`` overrides applied and validated."""
    # Only the keys set so far: a preset fills in what nobody set (defaults do not count as choices).
    tree = base.model_dump(mode="json", exclude_unset=True) if isinstance(base, Config) else base
    for key, value in (overrides or {}).items():
        _set(tree, _resolve_key(key), value)
    return validate(tree)


def validate(tree: dict) -> Config:
    tree = migrate(tree)
    _check_keys(tree)
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = _field_path(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if isinstance(err.get("input"), dict):  # a rule across keys: the message names them
            raise ConfigError(f"invalid config in '{where}': {msg}") from None
        raise ConfigError(f"invalid value for '{where}': {err.get('input')!r} ({msg})") from None


def _field_path(loc: tuple) -> str:
    """The config key a validation error is about: pydantic's location without the names of the union's
    members it tried (``optim.lr.float`` is ``optim.lr``)."""
    parts, model = [], Config
    for part in loc:
        if isinstance(part, int):
            parts.append(str(part))
            continue
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            break
        parts.append(part)
        annotation = fields[part].annotation
        members = [annotation, *get_args(annotation)] + [a for arg in get_args(annotation) for a in get_args(arg)]
        model = next((m for m in members if isinstance(m, type) and issubclass(m, BaseModel)), None)
    return ".".join(parts)
