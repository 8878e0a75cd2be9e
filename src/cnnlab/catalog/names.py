"""Every fixed name cnnlab takes, each spelled once: the one list that the config validates against, that
``--help`` and ``cnnlab config`` print, and that the code compares with.

Each kind is a ``StrEnum``: a member *is* its string (``Task.REGRESSION == "regression"``), so YAML files,
run directories and string comparisons written before these existed keep working. Names that come with a
builder (models, optimisers, augmentation presets ...) live in their registries instead; the transfer
strategies are objects (``cnnlab.catalog.strategies``). No torch here: the CLI answers from this module
without importing it.
"""
from __future__ import annotations

import sys
from typing import TypeVar

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # the same behaviour on 3.10: a member is its string, and prints as it
    from enum import Enum

    class StrEnum(str, Enum):
        def __str__(self) -> str:
            return self.value

from cnnlab.errors import UnknownName

E = TypeVar("E", bound=StrEnum)


class Task(StrEnum):
    CLASSIFICATION = "classification"  # softmax over the classes
    REGRESSION = "regression"  # one linear output


class Head(StrEnum):
    FLATTEN = "flatten"  # the custom CNN's: flatten the last feature map
    GAP = "gap"  # global average pooling (backbones)
    ORIGINAL = "original"  # VGG-16's own classifier, with a new output layer


class Metric(StrEnum):
    """The per-epoch figures that training logs (metrics.csv), in the order they are shown."""

    TRAIN_LOSS = "train_loss"
    TRAIN_ACC = "train_acc"
    VAL_LOSS = "val_loss"
    VAL_ACC = "val_acc"
    TRAIN_MAE = "train_mae"
    TRAIN_RMSE = "train_rmse"
    TRAIN_R2 = "train_r2"
    VAL_MAE = "val_mae"
    VAL_RMSE = "val_rmse"
    VAL_R2 = "val_r2"


class Monitor(StrEnum):
    """The metrics that may choose the best checkpoint and stop training early (a subset of ``Metric``)."""

    VAL_LOSS = Metric.VAL_LOSS.value
    VAL_ACC = Metric.VAL_ACC.value
    TRAIN_LOSS = Metric.TRAIN_LOSS.value


class Accelerator(StrEnum):
    AUTO = "auto"  # a GPU when there is one
    CPU = "cpu"
    GPU = "gpu"
    CUDA = "cuda"  # the same as gpu


class Distributed(StrEnum):
    """How the processes of one training run share the work (Lightning's strategy)."""

    AUTO = "auto"
    DDP = "ddp"


class Precision(StrEnum):
    FULL = "32-true"
    BF16_MIXED = "bf16-mixed"  # GPUs since Ampere, and CPUs
    FP16_MIXED = "16-mixed"  # CUDA GPUs only


class Device(StrEnum):
    """Where prediction, evaluation and serving run (``cuda:N`` names one GPU)."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


class Backend(StrEnum):
    """What runs a served or loaded model."""

    TORCH = "torch"
    ONNX = "onnx"  # ONNX Runtime, on the CPU
    AUTO = "auto"  # ONNX Runtime when the run has a current export and it is the faster on this CPU


class ExportFormat(StrEnum):
    ONNX = "onnx"
    TORCHSCRIPT = "torchscript"


class Split(StrEnum):
    """Which images ``cnnlab evaluate`` scores."""

    AUTO = "auto"  # the run's held-out test images, else its validation ones
    TEST = "test"
    VAL = "val"
    ALL = "all"


# The timm model any name with this prefix stands for: ``timm:convnext_tiny``.
TIMM_PREFIX = "timm:"

def listed(kind: type[StrEnum], sep: str = ", ") -> str:
    """The names of a kind in their declared order: ``auto, ddp``."""
    return sep.join(m.value for m in kind)


def parse(kind: type[E], value: object, what: str) -> E:
    """``value`` as a member of ``kind``, else an UnknownName that names ``what`` and every allowed value."""
    try:
        return kind(value)
    except ValueError:
        raise UnknownName(f"unknown {what} '{value}': use one of {listed(kind)}") from None

