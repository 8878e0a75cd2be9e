"""Prediction from a run directory. Imports torch and the model definitions only (no Lightning).

Attributes are imported lazily, so that ``cnnlab.inference.prediction`` (the document, no torch) is read
without PyTorch."""
from __future__ import annotations

from typing import Any

_LAZY = {"Prediction": "cnnlab.inference.prediction", "Predictor": "cnnlab.inference.predictor",
         "load": "cnnlab.inference.predictor"}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'cnnlab.inference' has no attribute '{name}'")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)
