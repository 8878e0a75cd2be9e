"""The learning-rate range test (Smith 2017), by Lightning's LR finder: ``--lr auto`` and ``cnnlab lr-find``.

The learning rate grows exponentially from 1e-6 to 1 over 100 steps while the loss is recorded (by
Lightning's finder); the suggestion is fastai's "valley" rule on that curve. The model's weights are restored after
the test, so training then starts from the same initialisation. The test runs while the plan is made
(cnnlab.training.plan), on a probe task of its own: the run's task is built afterwards with the rate found.
"""
from __future__ import annotations

import functools
import logging
import math
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cnnlab import files
from cnnlab.errors import CnnlabError
from cnnlab.rundir import LR_FIND_JSON, LR_FIND_PNG

log = logging.getLogger(__name__)

MIN_LR, MAX_LR, STEPS = 1e-6, 1.0, 100


@dataclass(frozen=True)
class RangeTest:
    """What the range test measured, and the rate it suggests."""

    lr: float
    lrs: tuple[float, ...]
    losses: tuple[float, ...]


def find_lr(task, datamodule, options: dict, show_bar: bool = False) -> RangeTest:
    """Run the range test on ``task`` (a probe: its ``lr`` is the test's lowest, and its own trainer, built
    from the run's ``options``, keeps its files in a temporary folder) and return the suggestion with the
    curve. Lightning's tuner restores the weights afterwards: training starts from the same ones."""
    import lightning as L
    from lightning.pytorch.tuner import Tuner

    per_epoch = max(1, len(datamodule.train_dataloader()) // max(1, options.get("accumulate_grad_batches", 1)))
    epochs = max(options.get("max_epochs") or 1, math.ceil(STEPS / per_epoch) + 1)  # a small dataset: it spans epochs
    with tempfile.TemporaryDirectory(prefix="cnnlab-lr-find-") as root, _finder_bar(show_bar):
        trainer = L.Trainer(**{**options, "max_epochs": epochs}, default_root_dir=root, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False)
        # update_attr=False: the suggestion is fastai's valley (below), not Lightning's steepest point
        finder = Tuner(trainer).lr_find(task, datamodule=datamodule, min_lr=MIN_LR, max_lr=MAX_LR,
                                        num_training=STEPS, update_attr=False, attr_name="lr")
    lr = None
    if finder is not None:
        _undo_double_debias(finder)
        lr = valley(finder.results["lr"], finder.results["loss"])
    if lr is None or not lr > 0:
        raise CnnlabError("the LR finder found no learning rate where the loss falls (too few training steps, or a "
                          "loss that never decreased): give --lr yourself (e.g. --lr 0.001)")
    return RangeTest(float(lr), tuple(float(x) for x in finder.results["lr"]),
                     tuple(float(x) for x in finder.results["loss"]))


def write(found: RangeTest, out: Path) -> None:
    """OUT/lr_find.png (loss against learning rate, the suggestion marked) and OUT/lr_find.json."""
    plot(found, Path(out) / LR_FIND_PNG)
    files.write_json(Path(out) / LR_FIND_JSON, {"suggestion": found.lr, "lr": list(found.lrs), "loss": list(found.losses)})


@contextmanager
def _finder_bar(show: bool):
    """Lightning's finder always opens a tqdm bar of its own ("Finding best initial lr"), also into a log
    file; show it only where training shows its progress bar (a terminal, with progress on)."""
    from lightning.pytorch.tuner import lr_finder

    bar = lr_finder.tqdm
    lr_finder.tqdm = functools.partial(bar, disable=not show)
    try:
        yield
    finally:
        lr_finder.tqdm = bar


def valley(lrs: list[float], losses: list[float]) -> Optional[float]:
    """fastai's "valley" rule: the longest run of decreasing loss (as a longest decreasing subsequence), and
    the learning rate half-way into its middle third. Lightning's own suggestion, the steepest point of
    the curve, lands on the noise of the flat start (4.6e-6 for cnn-small on mnist-5k, against a valley
    that runs from 1e-5 to 0.15)."""
    n = len(losses)
    if n < 3:
        return None
    longest = [1] * n
    start = end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and longest[i] < longest[j] + 1:
                longest[i] = longest[j] + 1
        if longest[end] < longest[i]:
            end, start = i, i - longest[i]
    third = (end - start) / 3
    return float(lrs[min(n - 1, start + int(third) + int(third / 2))])


def _undo_double_debias(finder, beta: float = 0.98) -> None:
    """Lightning's finder divides its running mean by 1 - beta^(step + 1) with the step already counted
    once (the first point is half the loss, and the curve climbs for its first ~50 points before it falls,
    which moves the suggestion): rescale each point by (1 - beta^(i + 2)) / (1 - beta^(i + 1))."""
    losses = finder.results.get("loss", [])
    finder.results["loss"] = [x * (1 - beta ** (i + 2)) / (1 - beta ** (i + 1)) for i, x in enumerate(losses)]


def plot(found: RangeTest, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = lr_figure(list(found.lrs), list(found.losses), found.lr)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def lr_figure(lrs: list[float], losses: list[float], lr: float):
    """Loss against learning rate, the suggestion ``lr`` marked on the curve. Lightning's own
    ``plot(suggest=True)`` marks its steepest-point rule instead, a different rate from the one cnnlab uses."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(lrs, losses)
    at = min(range(len(lrs)), key=lambda i: abs(lrs[i] - lr))
    ax.plot([lrs[at]], [losses[at]], marker="o", markersize=10, color="red", linestyle="none", label="suggestion")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(f"learning-rate range test: suggestion {lr:.3g}")
    ax.legend()
    return fig
