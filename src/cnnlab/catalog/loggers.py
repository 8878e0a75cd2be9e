"""Experiment trackers by name (``train.logger``): Lightning's own loggers, beside the run's metrics.csv.

A builder takes the tracker's folder in the run directory (folder: ``rundir.tracker`` names it) and the run's
name (run), and returns a Lightning logger (or None for csv: metrics.csv is always written). Trackers that are extra packages are checked before training starts,
and the error names the command that installs them.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from cnnlab.errors import ConfigError
from cnnlab.catalog.registry import Registry

LOGGERS: Registry = Registry("logger")
# logger -> (the module it needs, the command that installs it)
NEEDS = {"tensorboard": ("tensorboard", "pip install tensorboard"),
         "mlflow": ("mlflow", "pip install mlflow-skinny"),
         "wandb": ("wandb", "pip install wandb")}


def check_installed(name: str) -> None:
    """A ConfigError naming the install command when the tracker's package is missing."""
    LOGGERS.check(name)
    module, command = NEEDS.get(name, (None, None))
    if module is not None and importlib.util.find_spec(module) is None:
        raise ConfigError(f"--logger {name} needs the {module} package, which is not installed: {command}")


@LOGGERS.register("csv", description="metrics.csv only (written with every logger)")
def _csv(folder: Path, run: str):
    return None


@LOGGERS.register("tensorboard", description="TensorBoard event files in RUN/tensorboard: tensorboard --logdir RUN")
def _tensorboard(folder: Path, run: str):
    from lightning.pytorch.loggers import TensorBoardLogger

    return TensorBoardLogger(save_dir=str(folder.parent), name=folder.name, version="", default_hp_metric=False)


@LOGGERS.register("mlflow", description="an MLflow file store in RUN/mlruns (offline): mlflow ui --backend-store-uri RUN/mlruns")
def _mlflow(folder: Path, run: str):
    from lightning.pytorch.loggers import MLFlowLogger

    # MLflow 3 keeps its file store working but refuses it unless asked (it prefers a database server);
    # a folder under the run is what works offline with nothing else installed.
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MLFlowLogger(experiment_name="cnnlab", run_name=run, tracking_uri=folder.resolve().as_uri())


@LOGGERS.register("wandb", description="Weights & Biases (online after wandb login; WANDB_MODE=offline keeps it local)")
def _wandb(folder: Path, run: str):
    from lightning.pytorch.loggers import WandbLogger

    # wandb names its folder itself, beside the save_dir it is given: the run's rundir.WANDB
    return WandbLogger(project="cnnlab", name=run, save_dir=str(folder.parent))
