"""cnnlab: from a folder of labelled images to a trained, measured and deployed CNN.

    import cnnlab
    result = cnnlab.train("data/mnist", out="runs/mnist", epochs=5)
    metrics = cnnlab.evaluate("runs/mnist", "data/mnist")
    cnnlab.load("runs/mnist").predict(["digit.png"])
    model = cnnlab.create_model("resnet18", num_outputs=10, input_size=64)
    result = cnnlab.experiment("activations", seeds=3, quick=True)  # result.verdict, result.html_path

Attributes are imported lazily, so ``cnnlab.load`` never pulls in Lightning.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "train": ("cnnlab.training.fit", "train"),
    "evaluate": ("cnnlab.evaluation.metrics", "evaluate"),
    "experiment": ("cnnlab.experiments.engine", "run_experiment"),
    "load": ("cnnlab.inference.predictor", "load"),
    "create_model": ("cnnlab.models.registry", "create_model"),
    "load_config": ("cnnlab.config", "load_config"),
    "Config": ("cnnlab.config", "Config"),
    **{name: ("cnnlab.errors", name) for name in ("CnnlabError", "ConfigError", "UnknownName", "DataError", "BadImage",
                                                  "WeightsError", "RunDirError", "Diverged")},
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'cnnlab' has no attribute '{name}'")
    import importlib

    module, attr = _LAZY[name]
    return getattr(importlib.import_module(module), attr)
