"""Framework overhead: cnnlab's training throughput over a bare PyTorch loop's, with the same model, the
same in-memory uint8 images, batch size, optimiser, one-cycle schedule and threads, and the same data work.

The bare loop: shuffle, slice the uint8 images, apply the data module's own augmentation transform to the
batch (cnnlab's default ``light`` preset from scratch: rotation, shift and zoom, eight images per draw),
forward, loss (with the default's label smoothing), backward, step (Adam's fused kernel, as cnnlab's),
schedule step. It does not seed each batch's augmentation, check
finiteness, sum metrics, write checkpoints or print: those are what cnnlab adds, and what is measured.

Side by side in one run: this VM's speed drifts by tens of percent from minute to minute (and other jobs
share its two cores), so the epochs alternate. After each cnnlab (Lightning) epoch, a callback runs one
epoch of the bare loop on its own copy of the model; each pair is measured seconds apart, and the median
of the paired ratios is reported. A cnnlab epoch is everything from its start to the next one's but the
bare epoch: the loader, every hook, the progress line and the two checkpoints it writes.

Columns: cnnlab's defaults, then each feature switched off in turn, so the cost of each stays visible (a
column's ratio minus the default's is what that feature costs); ``lightning`` is a plain LightningModule
with no callbacks, logger or checkpoints on the same batches: the floor that Lightning itself sets.
Each ratio is given by wall clock and by process CPU time (what the other jobs on the machine disturb
least).

Target: the default column >= 0.95.
Run: .venv/bin/python benchmarks/overhead.py [--epochs 4] [--columns default,no-augment,...]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import BatchSampler, DataLoader, RandomSampler

import cnnlab
from cnnlab.data.datasets import InMemoryImages, batch_collate
from cnnlab.training.plan import LABEL_SMOOTHING
from common import SCRATCH, mnist_5k, verdict

EPOCHS, BATCH, LR = 5, 64, 0.003  # LR: cnnlab's default from scratch (and one-cycle, its default schedule)


def clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def textbook_optimiser(model: torch.nn.Module, steps: int):
    opt = torch.optim.Adam(model.parameters(), lr=LR, fused=True)  # the kernel cnnlab's adam picks on the CPU
    return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps)


class BareEpochBetween(Callback):
    """One bare-PyTorch epoch after every Lightning epoch, on the same images and the same augmentation;
    the clocks at every hand-over, so that each side's time of each epoch is known."""

    def __init__(self, augment: bool, ds: Optional[InMemoryImages] = None) -> None:
        self.augment, self.ds = augment, ds
        self.marks: list[tuple[str, tuple[float, float]]] = []  # (what starts, clocks)

    def on_train_start(self, trainer, pl_module) -> None:
        ds = self.ds or trainer.datamodule.prepared.datasets["train"]
        self.x, self.y = ds.images, ds.targets
        self.transform = self.ds.transform if self.ds else trainer.datamodule.augment
        self.model = copy.deepcopy(pl_module.model).train()
        optim = getattr(pl_module, "optim_cfg", None)  # the run's own loss (Plain: the default's)
        self.smoothing = optim.label_smoothing if optim is not None else LABEL_SMOOTHING
        steps = -(-len(self.y) // BATCH)
        self.opt, self.sched = textbook_optimiser(self.model, steps * trainer.max_epochs)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.marks.append(("steps", clocks()))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.marks.append(("bare", clocks()))
        perm = torch.randperm(len(self.y))
        for i in range(0, len(perm), BATCH):
            idx = perm[i:i + BATCH]
            x = self.x[idx]
            if self.augment and self.transform is not None:
                x = self.transform(x)
            loss = torch.nn.functional.cross_entropy(self.model(x), self.y[idx], label_smoothing=self.smoothing)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.sched.step()
        self.marks.append(("between", clocks()))

    def on_train_end(self, trainer, pl_module) -> None:
        self.marks.append(("end", clocks()))

    def spans(self, clock: int) -> list[dict]:
        """Each epoch's seconds on the wall clock (0) or the CPU clock (1): cnnlab's steps ("steps"), the
        bare epoch ("bare"), and cnnlab's work after it until the next epoch starts ("between":
        checkpoints, the progress line, the next loader)."""
        spans: list[dict] = []
        for (what, start), (_, end) in zip(self.marks, self.marks[1:]):
            if what == "steps":
                spans.append({})
            spans[-1][what] = end[clock] - start[clock]
        return [s for s in spans if "bare" in s]

    def pairs(self, clock: int) -> list[tuple[float, float]]:
        """(cnnlab seconds, bare seconds) of each epoch."""
        return [(s["steps"] + s.get("between", 0.0), s["bare"]) for s in self.spans(clock)]


# ----------------------------------------------------------------------------- columns
def no_finite_checks(task) -> None:
    task.watch_finite = False


def no_gradient_checks(task) -> None:
    task.check_gradients = False


@dataclass
class Column:
    name: str
    what: str
    overrides: dict = field(default_factory=dict)
    setup: Optional[Callable] = None  # applied to the LightningModule when the fit starts

    @property
    def augments(self) -> bool:
        return self.overrides.get("augment") != "none"


COLUMNS = [
    Column("default", "cnnlab's defaults"),
    Column("no-augment", "no augmentation (on both sides)", {"augment": "none"}),
    Column("no-finite-checks", "no finiteness checks", setup=no_finite_checks),
    Column("no-gradient-checks", "finiteness of the loss and statistics only", setup=no_gradient_checks),
    Column("no-progress", "no progress line", {"progress": False}),
    Column("no-smoothing", "no label smoothing (on both sides)", {"label_smoothing": 0.0}),
    Column("lightning", "a plain LightningModule, no callbacks/logger/checkpoints"),
]


class Setup(Callback):
    def __init__(self, fn: Callable) -> None:
        self.fn = fn

    def on_fit_start(self, trainer, pl_module) -> None:
        self.fn(pl_module)


def run_cnnlab(column: Column, epochs: int, capture: Callback) -> BareEpochBetween:
    bare = BareEpochBetween(column.augments)
    extra = [Setup(column.setup)] if column.setup else []
    cnnlab.train(mnist_5k() / "train", SCRATCH / "overhead-run", overwrite=True, epochs=epochs, batch_size=BATCH,
                 val_split=0.0, calibrate=False, callbacks=[capture] + extra + [bare], **column.overrides)
    return bare


class Capture(Callback):
    """A fresh copy of cnnlab's model and its augmented training set, for the plain Lightning column."""

    def on_fit_start(self, trainer, pl_module) -> None:
        if not hasattr(self, "model") and trainer.datamodule.augment is not None:
            ds = trainer.datamodule.prepared.datasets["train"]
            self.model = copy.deepcopy(pl_module.model)
            self.ds = InMemoryImages(ds.images, ds.targets, trainer.datamodule.augment)


class Plain(L.LightningModule):
    def __init__(self, model: torch.nn.Module, steps: int) -> None:
        super().__init__()
        self.model, self.steps = model, steps

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.cross_entropy(self.model(x), y, label_smoothing=LABEL_SMOOTHING)

    def configure_optimizers(self):
        opt, sched = textbook_optimiser(self.model, self.steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def run_lightning(column: Column, epochs: int, capture: Capture) -> BareEpochBetween:
    if not hasattr(capture, "model"):  # no cnnlab column ran first: build the model and data, unmeasured
        cnnlab.train(mnist_5k() / "train", SCRATCH / "overhead-run", overwrite=True, epochs=1, batch_size=BATCH,
                     val_split=0.0, calibrate=False, callbacks=[capture])
    bare = BareEpochBetween(column.augments, capture.ds)
    batches = BatchSampler(RandomSampler(capture.ds), BATCH, drop_last=False)
    loader = DataLoader(capture.ds, batch_sampler=batches, collate_fn=batch_collate)
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[bare])
    trainer.fit(Plain(copy.deepcopy(capture.model), len(batches) * epochs), train_dataloaders=loader)
    return bare


def ratios(pairs: list[tuple[float, float]]) -> list[float]:
    return [b / c for c, b in pairs[1:]]  # throughput ratio = bare time / cnnlab time; the first epoch warms up


def measure(columns: list[Column], epochs: int) -> dict[str, dict]:
    capture, results = Capture(), {}
    for column in columns:
        if column.name == "lightning":
            bare = run_lightning(column, epochs, capture)
        else:
            bare = run_cnnlab(column, epochs, capture)
        n, pairs = len(bare.y), bare.pairs(0)[1:]
        results[column.name] = {"what": column.what, "wall": ratios(bare.pairs(0)), "cpu": ratios(bare.pairs(1)),
                                "ours_img_s": n / statistics.median(c for c, _ in pairs),
                                "bare_img_s": n / statistics.median(b for _, b in pairs),
                                "between_s": statistics.median(s.get("between", 0.0) for s in bare.spans(0)[1:]),
                                "steps_only": [s["bare"] / s["steps"] for s in bare.spans(0)[1:]]}
    return results


def report(results: dict[str, dict], threads: int) -> None:
    print(f"framework overhead, cnn-small on mnist-5k/train, batch {BATCH}, {threads} torch thread(s); "
          f"ratio = bare loop's time / cnnlab's, median of paired epochs (wall clock; CPU time; wall clock "
          f"of the steps alone, without the checkpoints and the line between epochs)")
    for name, r in results.items():
        wall, cpu = statistics.median(r["wall"]), statistics.median(r["cpu"])
        steps = statistics.median(r["steps_only"])
        print(f"  {name:<20} {wall:.3f}  ({cpu:.3f} CPU, {steps:.3f} steps only)  cnnlab {r['ours_img_s']:.0f} img/s, bare "
              f"{r['bare_img_s']:.0f} img/s, between epochs {r['between_s'] * 1e3:.0f} ms; paired "
              f"{', '.join(f'{x:.3f}' for x in r['wall'])}  [{r['what']}]")
    if "default" in results:
        ratio = statistics.median(results["default"]["wall"])
        print(f"default settings vs the bare loop: median {ratio:.3f} (target >= 0.95: {verdict(ratio, 0.95, True)})")


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="epochs per column; the first warms up")
    parser.add_argument("--columns", default=",".join(c.name for c in COLUMNS),
                        help=f"comma-separated, of: {', '.join(c.name for c in COLUMNS)}")
    args = parser.parse_args(argv)
    by_name = {c.name: c for c in COLUMNS}
    unknown = [n for n in args.columns.split(",") if n not in by_name]
    if unknown:
        parser.error(f"unknown column(s) {', '.join(unknown)}; known: {', '.join(by_name)}")
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first warms up)")
    results = measure([by_name[n] for n in args.columns.split(",")], args.epochs)
    report(results, torch.get_num_threads())
    return results


if __name__ == "__main__":
    main()
