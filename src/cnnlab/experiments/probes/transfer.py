"""Transfer learning through cnnlab's own path: each arm trains ordinary cnnlab runs (``--weights SOURCE_RUN
--strategy ...``) on the target digits 5-9 at each size and evaluates them on the test digits 5-9.

The engine has no "train this first" step, so the runs several arms need are shared: every cnnlab run of the
experiment lives in OUT/trainings/WHAT/seed-K[/n-N], is trained once under a lock by whichever unit needs it
first, and is reused by the others (the source runs of a seed; the scratch runs every arm's gain is measured
against). A run killed half-way continues from its checkpoint; a finished one is read, not trained again.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Optional

from filelock import FileLock

from cnnlab import files, rundir
from cnnlab.catalog.strategies import STRATEGIES
from cnnlab.errors import CnnlabError
from cnnlab.experiments.probes import transfer_data as tdata

log = logging.getLogger(__name__)
# A small CNN (augmentation's: 16 and 32 filters, dense 64): its two blocks are the backbone that transfers.
NETWORK = {"blocks": [{"filters": 16}, {"filters": 32}], "dense": [64], "dropout": 0.0}
# Every run alike: no augmentation (a frozen backbone's features are then computed once, and no arm gets
# more distinct images than another), no temperature scaling, no progress bar.
COMMON = {**NETWORK, "augment": "none", "calibrate": False, "progress": False}
SCRATCH = "full"  # the strategy that trains every layer: from no source, training from scratch
SOURCES = ("near", "far", "none")  # digits 0-4, shapes, or no source (scratch, random features)


def shared_run(run_dir: Path, data: Path, overrides: dict) -> Path:
    """The finished cnnlab run in ``run_dir`` trained on ``data`` with ``overrides``: trained here, continued
    from its checkpoint, or read as it is; a run there with another setting is an error, never reused."""
    # the data relative to the run: an experiment folder moved as a whole still resumes
    setting = files.finite({"data": os.path.relpath(data, run_dir), "overrides": overrides})
    marker = Path(str(run_dir) + ".setting.json")
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(run_dir) + ".lock"):
        if marker.is_file() and json.loads(marker.read_text()) != setting:
            raise CnnlabError(f"{run_dir} was trained with another setting (of an earlier version of the transfer "
                              f"experiment?): run it with another --out, or remove {run_dir}")
        if not marker.is_file() and run_dir.exists():
            raise CnnlabError(f"{run_dir} was not made by the transfer experiment: run it with another --out")
        info = rundir.read_training(run_dir) if rundir.holds_run(run_dir) else None
        if info is not None and info.complete:
            return run_dir
        from cnnlab.training.fit import train

        if rundir.holds_run(run_dir):
            log.info(f"continuing {run_dir}")
            train(out=run_dir, resume=True)
        else:
            files.write_json(marker, setting)
            train(str(data), run_dir, **overrides)
    return run_dir


def source_run(out: Path, digits: Path, source: str, seed: int, source_epochs: int) -> Optional[Path]:
    """The seed's source run (None for no source): digits 0-4, or shapes made grey and 28x28 by the pipeline."""
    if source == "none":
        return None
    if source not in SOURCES:
        raise CnnlabError(f"transfer source must be one of {', '.join(SOURCES)}, got {source}")
    data = tdata.near_source(digits, out) if source == "near" else tdata.far_source(out)
    grey = {"in_channels": 1, "input_size": 28}  # the target's input: the source run fixes it for every transfer
    return shared_run(out / "trainings" / f"source-{source}" / f"seed-{seed}", data,
                      {**COMMON, **grey, "weights": "none", "epochs": source_epochs, "seed": seed})


def target_overrides(weights: Optional[Path], strategy: str, epochs: int, seed: int) -> dict:
    """A target run's settings: every arm alike but for its starting weights and strategy."""
    return {**COMMON, "weights": str(weights) if weights else "none", "strategy": strategy, "epochs": epochs,
            "seed": seed}


def target_run(out: Path, digits: Path, seed: int, per_class: int, epochs: int, source: str, strategy: str,
               source_epochs: int) -> Path:
    """One target training: ``per_class`` images of each digit 5-9 from the source run with ``strategy``
    (``full`` from no source is training from scratch)."""
    weights = source_run(out, digits, source, seed, source_epochs)
    data = tdata.target(digits, out, seed, per_class)
    overrides = target_overrides(weights, strategy, epochs, seed)
    return shared_run(out / "trainings" / f"{source}-{strategy}" / f"seed-{seed}" / f"n-{per_class}", data,
                      overrides)


def test_accuracy(run_dir: Path, data: Path) -> float:
    """cnnlab's own evaluation of the run on its data's test split (the test digits 5-9); the run's
    evaluation.json when an earlier arm already evaluated the finished run there (a scratch baseline)."""
    from cnnlab.evaluation.metrics import evaluate

    saved = rundir.evaluation_path(run_dir)
    if saved.is_file() and saved.stat().st_mtime >= rundir.weights_path(run_dir).stat().st_mtime:
        doc = json.loads(saved.read_text())
        if doc.get("data") == str(data) and doc.get("split") == "test" and doc.get("accuracy") is not None:
            return float(doc["accuracy"])
    return float(evaluate(run_dir, data, plot=False)["accuracy"])


def _sizes(sizes: list[int], epochs: list[int], control: bool, control_sizes: list[int]) -> dict[int, int]:
    """The images per class this arm trains at, each with its epochs (one epoch count per size)."""
    if len(sizes) != len(epochs):
        raise CnnlabError(f"transfer: one epoch count per size, got sizes {sizes} and epochs {epochs}")
    per_size = dict(zip(sizes, epochs))
    chosen = control_sizes if control else sizes
    unknown = [n for n in chosen if n not in per_size]
    if unknown:
        raise CnnlabError(f"transfer: control sizes {unknown} are not among the sizes {sizes}")
    return {n: per_size[n] for n in chosen}


def arm(seed: int, data: str, out: str, source: str, strategy: str, sizes: list[int], epochs: list[int],
        source_epochs: int = 5, control: bool = False, control_sizes: tuple[int, ...] = ()) -> dict:
    """One arm: for each size, a cnnlab run on the target digits 5-9 from ``source`` with ``strategy``, its
    test accuracy on the test digits 5-9 and its gain over training from scratch on the same images
    (``control``: only at ``control_sizes``). ``gap_excess``: the gain at the largest size minus half the gain
    at the smallest (below 0: the gap at least halves as the data grows)."""
    out_dir = Path(out)
    digits = tdata.exported(data, out_dir)
    scratch = source == "none" and not STRATEGIES.get(strategy).freezes_backbone  # every layer trains from random
    chosen = _sizes(list(sizes), list(epochs), control, list(control_sizes))
    scalars, rows, acc, gain = {}, [], [], []
    for n, n_epochs in chosen.items():
        folder = tdata.target(digits, out_dir, seed, n)
        a = test_accuracy(target_run(out_dir, digits, seed, n, n_epochs, source, strategy, source_epochs), folder)
        base = a if scratch else test_accuracy(
            target_run(out_dir, digits, seed, n, n_epochs, "none", SCRATCH, source_epochs), folder)
        acc.append(a)
        gain.append(a - base)
        scalars[f"test_accuracy_{n}"] = a
        if not scratch:
            scalars[f"gain_{n}"] = a - base
        rows.append([n, n_epochs, round(a, 4), round(base, 4), round(a - base, 4)])
    done = list(chosen)
    if not scratch and len(done) > 1:
        scalars["gap_excess"] = gain[-1] - gain[0] / 2
    curves = {"test_accuracy": {"images_per_class": done, "y": acc}}
    if not scratch:
        curves["gain"] = {"images_per_class": done, "y": gain}
    table = {"header": ["images per class", "epochs", "test accuracy", "from scratch", "gain"], "rows": rows}
    return {"scalars": scalars, "curves": curves, "tables": {f"{source} source, {strategy}": table}}
