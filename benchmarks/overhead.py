"""Framework overhead: cnnlab's training throughput (images/s) over a bare PyTorch loop's, with the
same model, the same in-memory uint8 tensors, batch size, optimiser and threads.

Side by side in one run: this VM's speed drifts by tens of percent from minute to minute, so the
epochs alternate. After each cnnlab (Lightning) epoch, a callback runs one epoch of a textbook loop
(shuffle, slice, forward, loss, backward, step) on its own copy of the model; each pair is measured
seconds apart, and the median of the paired ratios is reported.

Target: cnnlab / bare >= 0.95.
Run: .venv/bin/python benchmarks/overhead.py
"""
from __future__ import annotations

import statistics
import time

import torch
from lightning.pytorch.callbacks import Callback

import cnnlab
from cnnlab import rundir
from common import SCRATCH, mnist_5k, verdict

EPOCHS, BATCH = 8, 64


class BareEpochBetween(Callback):
    """One bare-PyTorch epoch after every Lightning epoch, on the same training tensors."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_fit_start(self, trainer, pl_module) -> None:
        import copy

        ds = trainer.datamodule.prepared.datasets["train"]
        self.x, self.y = ds.images, ds.targets
        self.model = copy.deepcopy(pl_module.model).train()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        start = time.perf_counter()
        perm = torch.randperm(len(self.y))
        for i in range(0, len(perm), BATCH):
            idx = perm[i:i + BATCH]
            loss = torch.nn.functional.cross_entropy(self.model(self.x[idx]), self.y[idx])
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        self.seconds.append(time.perf_counter() - start)


def main() -> dict:
    data = mnist_5k()
    out = SCRATCH / "overhead-run"
    bare = BareEpochBetween()
    cnnlab.train(data / "train", out, overwrite=True, epochs=EPOCHS, batch_size=BATCH, val_split=0.0, callbacks=[bare])
    n = len(rundir.read_csv(out / rundir.SPLIT))
    ours = [float(r["seconds"]) for r in rundir.read_csv(out / rundir.METRICS)]
    pairs = list(zip(ours, bare.seconds))[1:]  # the first epoch warms up
    ratios = [b / c for c, b in pairs]  # throughput ratio = bare time / cnnlab time
    ratio = statistics.median(ratios)
    print(f"framework overhead  bare PyTorch loop: {n / statistics.median(bare.seconds[1:]):.0f} img/s, "
          f"cnnlab (Lightning, progress bar on): {n / statistics.median(ours[1:]):.0f} img/s; "
          f"paired ratios {', '.join(f'{r:.3f}' for r in ratios)}; median {ratio:.3f} "
          f"(target >= 0.95: {verdict(ratio, 0.95, True)})")
    return {"ratio": ratio, "ratios": ratios}


if __name__ == "__main__":
    main()
