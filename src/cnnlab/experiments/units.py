"""One arm x seed: an ordinary run directory (training arms) or a probe's measurement, and its figures.

Each unit lives in OUT/runs/ARM/seed-K and ends by writing figures.json there (atomically), which also
records the setting it measured. A unit with figures.json for the same setting is finished: a re-run
reads it and changes nothing. A training run killed half-way continues from its last checkpoint.
"""
from __future__ import annotations

import importlib
import inspect
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from cnnlab import files, rundir
from cnnlab.errors import CnnlabError
from cnnlab.experiments.spec import Arm, Budget

log = logging.getLogger(__name__)
FIGURES = "figures.json"
# Every training arm's settings unless the experiment sets them: no progress bar, no temperature
# scaling (it changes no loss or accuracy), the light recipe's data order, and no label smoothing: the
# published results (docs/results) were measured before it became the default, and a smoothed training
# loss never reaches 0, which changes what an arm's training-loss curve means (an arm may set it).
TRAIN_DEFAULTS = {"progress": False, "calibrate": False, "label_smoothing": 0.0}
NOT_CURVES = ("epoch", "lr", "seconds")


@dataclass(frozen=True)
class Unit:
    """What one process needs to run one arm x seed (picklable: it crosses to --jobs workers)."""

    experiment: str
    arm: Arm
    seed: int
    budget: Budget
    data: str  # a folder for training arms; a built-in name or a folder for probes
    directory: str
    device: Optional[str] = None
    evaluate: bool = False

    @property
    def path(self) -> Path:
        return Path(self.directory)

    def setting(self) -> dict:
        """What the figures depend on: a finished unit with another setting is another experiment's."""
        if self.arm.probe:
            return {"probe": self.arm.probe, "params": probe_params(self), "seed": self.seed, "data": self.data}
        return {"overrides": train_overrides(self), "data": self.data}


def unit_dir(out: Path, arm: str, seed: int) -> Path:
    return Path(out) / "runs" / arm / f"seed-{seed}"


def experiment_dir(unit: Unit) -> Path:
    """OUT, the experiment's folder (``unit_dir``'s inverse): where units share what several of them need."""
    return unit.path.parents[2]


def finished(unit: Unit) -> Optional[dict]:
    """The unit's figures if it is finished; a unit finished with another setting is an error."""
    path = unit.path / FIGURES
    if not path.is_file():
        return None
    import json

    saved = json.loads(path.read_text())
    if saved.get("setting") != files.finite(unit.setting()):
        raise CnnlabError(f"{unit.path} holds figures measured with another setting (of an earlier version of "
                          f"experiment {unit.experiment}?): run it with another --out, or remove {unit.path}")
    return saved


def run(unit: Unit) -> dict:
    """Measure the unit and write its figures.json; returns them."""
    if unit.arm.probe:
        figures = _probe(unit)
    else:
        figures = _train(unit)
    saved = {"arm": unit.arm.name, "seed": unit.seed, "setting": unit.setting(), **figures}
    files.write_json(unit.path / FIGURES, saved)
    return files.finite(saved)


# ----------------------------------------------------------------------------- probe arms
def resolve_probe(ref: str):
    module, _, name = ref.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise CnnlabError(f"probe '{ref}' not found: give it as package.module:function") from None


def probe_params(unit: Unit) -> dict:
    """The budget's probe settings that this probe takes, then the arm's own."""
    accepted = inspect.signature(resolve_probe(unit.arm.probe)).parameters
    return {**{k: v for k, v in unit.budget.params.items() if k in accepted}, **unit.arm.params}


def _probe(unit: Unit) -> dict:
    fn = resolve_probe(unit.arm.probe)
    # A probe that takes ``out`` keeps its trainings there, shared between arms (the transfer experiment's
    # source runs): not a setting, so not in probe_params.
    shared = {"out": str(experiment_dir(unit))} if "out" in inspect.signature(fn).parameters else {}
    result = fn(seed=unit.seed, data=unit.data, **shared, **probe_params(unit))
    return {"scalars": {k: float(v) for k, v in result.get("scalars", {}).items()},
            "curves": result.get("curves", {}), "tables": result.get("tables", {})}


# ----------------------------------------------------------------------------- training arms
def train_overrides(unit: Unit) -> dict:
    extra = {"accelerator": unit.device} if unit.device else {}
    return {**TRAIN_DEFAULTS, **unit.budget.overrides, **unit.arm.overrides, **extra, "seed": unit.seed}


def _train(unit: Unit) -> dict:
    from cnnlab.training.fit import train

    if rundir.holds_run(unit.path):  # killed before: continue it (a finished run is left as it is)
        log.info(f"continuing {unit.path}")
        train(out=unit.path, resume=True)
    else:
        train(unit.data, unit.path, **train_overrides(unit))
    figures = training_figures(unit.path)
    if unit.evaluate:
        figures["scalars"].update(_evaluation(unit))
    return figures


def _evaluation(unit: Unit) -> dict:
    from cnnlab.evaluation.metrics import evaluate

    result = evaluate(unit.path, unit.data, plot=False)
    scores = {f"test_{k}": float(result[k]) for k in ("accuracy", "f1_macro", "balanced_accuracy") if k in result}
    if "accuracy" in result:  # error ratios ("0.7% against 1.6%") need the error itself
        scores["test_error"] = 1.0 - float(result["accuracy"])
    return scores


def training_figures(run_dir: Path) -> dict[str, Any]:
    """A finished run's figures: each metrics.csv column at the end and after the first epoch, the time,
    the throughput, and the curves against epochs, optimiser steps and seconds."""
    from cnnlab.data.datamodule import loader_batch_size

    rows = rundir.metrics_rows(run_dir)
    if not rows:
        raise CnnlabError(f"{run_dir} finished without one complete epoch: give the experiment more epochs")
    cfg = rundir.load_run_config(run_dir)
    n_train = sum(1 for r in rundir.read_csv(Path(run_dir) / rundir.SPLIT) if r.get("split") == "train")
    steps = 1 if cfg.train.mode == "batch" else math.ceil(n_train / loader_batch_size(cfg))
    seconds = [float(r["seconds"]) for r in rows]
    x = {"epoch": list(range(1, len(rows) + 1)), "step": [steps * (i + 1) for i in range(len(rows))],
         "second": [sum(seconds[: i + 1]) for i in range(len(rows))]}
    names = [k for k in rows[0] if k not in NOT_CURVES and not k.startswith("lr_")]
    curves = {k: {**x, "y": [_number(r.get(k)) for r in rows]} for k in names}
    scalars = {k: c["y"][-1] for k, c in curves.items()}
    scalars.update({f"{k}@1": c["y"][0] for k, c in curves.items()})
    scalars.update({"seconds": sum(seconds), "epochs": float(len(rows)), "steps": float(x["step"][-1]),
                    "images_per_second": n_train * len(rows) / max(sum(seconds), 1e-9)})
    return {"scalars": scalars, "curves": curves, "tables": {}}


def _number(text) -> Optional[float]:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None
