"""The built-in experiments by name: a registry filled by the modules of ``experiments.builtin``."""
from __future__ import annotations

import importlib
import pkgutil

from cnnlab.catalog.registry import Registry

EXPERIMENTS: Registry = Registry("experiment", hint="or a FILE.yaml of your own")


def _register_builtin() -> None:
    from cnnlab.experiments import builtin

    for info in pkgutil.iter_modules(builtin.__path__):
        importlib.import_module(f"{builtin.__name__}.{info.name}")


_register_builtin()
