"""The GPU path, measured in one script (at most ~5 minutes on one GPU).

1. ResNet-50 at 224x224, bf16-mixed, channels_last, batch 256, random init: training throughput (img/s)
   of cnnlab (its Lightning module, model with preprocessing in front, from uint8 batches already on
   the GPU) and of a bare PyTorch loop with the same model, optimiser and settings, with and without
   torch.compile, and the ratio cnnlab / bare (target >= 0.95).
2. MFU: ResNet-50 is 4.09 GMACs forward per image; training counts ~3x, so 24.5 GFLOP an image; divided
   by the card's dense bf16 peak (H100/H200 SXM: 989 TFLOP/s). Target >= 3,000 img/s on one H100.
3. End to end: 5,000 JPEGs made at run time, decoded and augmented by cnnlab's pipeline (standard
   preset), `cnnlab.train` for 2 epochs: img/s and the share of step time spent waiting for data
   (target <= 5%), for each of E2E_VARIANTS: decoded every epoch by CPU loader workers (--cache none),
   decoded every epoch on the GPU (--cache none --decode device), and the uint8 image cache (--cache disk).
4. ``--ablation``: the eager loop's gap taken apart. The bare loop against cnnlab as it trains, with its
   finiteness checks read back every step, with them off, and a plain LightningModule (Lightning's own
   floor), alternated over ``--rounds``; then torch.profiler over ten of cnnlab's steps: the host's time
   by operator, and how often it waited for the GPU (synchronisations, device-to-host copies).

Run: python benchmarks/gpu.py                 (on a GPU machine: 1, 2, 3, then compiled)
     python benchmarks/gpu.py --ablation      (4 alone)     --e2e (3 alone)     --compiled (compiled alone)
     python benchmarks/gpu.py --smoke [...]   (CPU, tiny sizes: checks the script itself runs)
     bash benchmarks/gpu_path.sh              (all of it, with the CLI and resume checks, for a lease)
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

GMACS_RESNET50 = 4.09
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}


def peak_tflops() -> float | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------- 1. bare loop
def bare_loop(args, compile_: bool) -> float:
    import torchvision

    device = args.device
    model = torchvision.models.resnet50(num_classes=1000).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1) * 255
    x8 = torch.randint(0, 256, (args.batch, 3, args.size, args.size), dtype=torch.uint8, device=device)
    y = torch.randint(0, 1000, (args.batch,), device=device)

    def step_fn(x8, y):
        x = ((x8.float() - mean) / std).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    fn = torch.compile(step_fn) if compile_ else step_fn
    for _ in range(args.warmup):
        fn(x8, y)
    sync()
    start = time.perf_counter()
    for _ in range(args.steps):
        fn(x8, y)
    sync()
    return args.steps * args.batch / (time.perf_counter() - start)


# ----------------------------------------------------------------------------- 1. cnnlab
class StepTimer:
    """Wall time of steps warmup..warmup+steps (synchronised), from Lightning's hooks."""

    def __new__(cls, warmup: int, steps: int):
        from lightning.pytorch.callbacks import Callback

        class _Timer(Callback):
            def __init__(self):
                self.start = self.end = None
                self.wait = 0.0
                self._last_end = None

            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                now = time.perf_counter()
                if batch_idx == warmup:
                    sync()
                    self.start = time.perf_counter()
                elif self._last_end is not None and batch_idx > warmup:
                    self.wait += now - self._last_end

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                self._last_end = time.perf_counter()
                if batch_idx == warmup + steps - 1:
                    sync()
                    self.end = time.perf_counter()
                    trainer.should_stop = True

        return _Timer()


VARIANTS = {  # what each switches off in cnnlab's loop, so that the cost of each stays visible
    "default": "cnnlab as it trains",
    "checks-at-once": "the finiteness checks read back every step (the multi-process way)",
    "no-checks": "no finiteness checks (loss, gradients, running statistics)",
    "lightning": "a plain LightningModule: the same model and optimiser, no cnnlab hooks (Lightning's floor)",
}


def plain_lightning_task(model, lr: float):
    import lightning as L

    class Plain(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = model.to(memory_format=torch.channels_last)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.model(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=lr, momentum=0.9)

    return Plain()


def profiled(start: int, steps: int):
    """A callback that runs torch.profiler over ``steps`` training steps from step ``start`` and keeps
    its table: where the host's time goes, and how many times it waited for the GPU."""
    from lightning.pytorch.callbacks import Callback
    from torch.profiler import ProfilerActivity, profile

    class Profiled(Callback):
        table, syncs = "", {}

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == start:
                acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
                self.prof = profile(activities=acts)
                self.prof.__enter__()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if batch_idx == start + steps - 1:
                sync()
                self.prof.__exit__(None, None, None)
                events = self.prof.key_averages()
                self.table = events.table(sort_by="self_cpu_time_total", row_limit=25)
                self.syncs = {e.key: e.count for e in events
                              if any(k in e.key for k in ("Synchronize", "item", "_local_scalar_dense", "Memcpy", "EventQuery"))}
                trainer.should_stop = True

    return Profiled()


def cnnlab_loop(args, compile_: bool, variant: str = "default", profile_steps: int = 0):
    import lightning as L
    from torch.utils.data import DataLoader, RandomSampler

    from cnnlab.config import Config, with_overrides
    from cnnlab.data.datasets import InMemoryImages, batch_collate
    from cnnlab.models.registry import build_for_training, resolve_model_config, resolve_preprocessing
    from cnnlab.training.module import ImageTask

    cfg = resolve_model_config(with_overrides(Config(), {
        "model": "resnet50", "weights": "none", "input_size": args.size, "optimizer": "sgd", "lr": 0.1,
        "schedule": "none"}))
    pre = resolve_preprocessing(cfg)
    model, _ = build_for_training(cfg, pre, 1000)
    if variant == "lightning":
        task = plain_lightning_task(model, 0.1)
    else:
        task = ImageTask(model, "classification", 1000, cfg.optim, channels_last=True, compile=compile_)
    if variant == "checks-at-once":
        task._checks.immediate = lambda task: True
    elif variant == "no-checks":
        task.watch_finite = False
    n = args.batch * (args.warmup + max(args.steps, profile_steps))
    pool = min(n, args.batch * 4)  # drawn with replacement: 16,640 random 224 px images took seconds to make
    images = torch.randint(0, 256, (pool, 3, args.size, args.size), dtype=torch.uint8)
    data = InMemoryImages(images, torch.randint(0, 1000, (pool,)))
    loader = DataLoader(data, batch_size=args.batch, sampler=RandomSampler(data, replacement=True, num_samples=n),
                        collate_fn=batch_collate, pin_memory=args.device.type == "cuda")
    timer = profiled(args.warmup, profile_steps) if profile_steps else StepTimer(args.warmup, args.steps)
    trainer = L.Trainer(accelerator=args.device.type, devices=1, precision=args.precision, max_epochs=1,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, callbacks=[timer])
    trainer.fit(task, train_dataloaders=loader)
    if profile_steps:
        return timer
    return args.steps * args.batch / (timer.end - timer.start)


def loop_ablation(args) -> dict:
    """Each variant of cnnlab's loop against the bare loop, eager, alternated twice (the ratios paired),
    then torch.profiler over cnnlab's default steps."""
    rows: dict[str, list[float]] = {name: [] for name in ("bare", *VARIANTS)}
    for r in range(args.rounds):
        rows["bare"].append(bare_loop(args, False))
        for name in VARIANTS:
            rows[name].append(cnnlab_loop(args, False, name))
            print(f"round {r + 1} {name:15s} {rows[name][-1]:7.0f} img/s, bare {rows['bare'][-1]:7.0f}", flush=True)
    out = {}
    for name in VARIANTS:
        ratios = sorted(v / b for v, b in zip(rows[name], rows["bare"]))
        out[name] = {"img_s": round(max(rows[name]), 1), "ratio_median": round(ratios[len(ratios) // 2], 3),
                     "ratios": [round(r, 3) for r in ratios]}
        print(f"ablation {name:15s} {max(rows[name]):7.0f} img/s, ratio to bare {ratios[len(ratios) // 2]:.3f} "
              f"({VARIANTS[name]})", flush=True)
    out["bare_img_s"] = round(max(rows["bare"]), 1)
    prof = cnnlab_loop(args, False, "default", profile_steps=args.profile_steps)
    out["host_waits"] = prof.syncs
    print("profile of cnnlab's eager steps (self CPU time):\n" + prof.table, flush=True)
    print("host waits and copies in those steps: " + json.dumps(prof.syncs), flush=True)
    return out


# ----------------------------------------------------------------------------- 3. end to end
def make_jpegs(root: Path, n: int, size: int) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / f"c{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        arr = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"{i:05d}.jpg", quality=90)
    return root


def data_wait_timer():
    """The second epoch's wall time, and the part of it the loop spent waiting for the next batch."""
    from lightning.pytorch.callbacks import Callback

    class DataWait(Callback):
        wait = total = 0.0
        _t0 = _last = None

        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                sync()
                self._t0 = self._last = time.perf_counter()

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if self._last is not None:
                self.wait += time.perf_counter() - self._last

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if self._t0 is not None:
                self._last = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            if self._t0 is not None:
                sync()
                self.total = time.perf_counter() - self._t0

    return DataWait()


# name -> (data.cache, data.decode, loader workers or None for the machine's, what it measures); the target's
# path first, so a time-boxed run keeps its figure
E2E_VARIANTS = {  # name: (cache, decode, loader workers, augmentation, what it is)
    "disk-cache": ("disk", "auto", 2, "decoded once into the uint8 image cache, memory-mapped each epoch"),
    # The H200 (2026-12-04) waited 67.5% of the step with the cache and 71.8% decoding every epoch: decoding is
    # not what bounds it. No augmentation tells whether the device-side augmentation is.
    "disk-cache-no-augment": ("disk", "auto", 2, "the image cache, no augmentation"),
    "files-cpu": ("none", "cpu", None, "decoded from the files every epoch by CPU loader workers"),
    "files-device": ("none", "device", 0, "decoded from the files every epoch, JPEGs in batches on the GPU"),
}


def _e2e_variant(args, data: Path, out: Path, cache: str, decode: str, workers: int, augment: str) -> dict:
    import cnnlab
    from cnnlab import rundir

    timer = data_wait_timer()
    start = time.perf_counter()
    result = cnnlab.train(data, out, callbacks=[timer], model="resnet50", weights="none",
                          input_size=args.size, epochs=2, batch_size=args.batch, cache=cache, decode=decode,
                          num_workers=workers, augment=augment, val_split=0.02,
                          precision=args.precision, channels_last=True, progress=False,
                          accelerator=args.device.type)
    wall = time.perf_counter() - start
    n_train = sum(1 for r in rundir.read_csv(result.run_dir / "split.csv") if r["split"] == "train")
    return {"cache": cache, "decode": decode, "workers": workers, "wall_s": round(wall, 1),
            "img_per_s": round(n_train / timer.total, 1),  # the second epoch: loaders and compile warm
            "data_wait_share": round(timer.wait / timer.total, 4)}


def end_to_end(args) -> dict:
    """Each of E2E_VARIANTS on the same JPEGs, with an image cache of its own (never the home folder's), its
    figures printed as it ends."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        data = make_jpegs(Path(tmp) / "jpegs", args.jpegs, args.jpeg_size)
        made = time.perf_counter() - start
        cpu_workers = max(1, min(14, (os.cpu_count() or 2) - 2))
        before = os.environ.get("CNNLAB_CACHE")
        os.environ["CNNLAB_CACHE"] = str(Path(tmp) / "cache")
        variants = {}
        try:
            for name, (cache, decode, workers, what) in E2E_VARIANTS.items():
                augment = "none" if name.endswith("no-augment") else "standard"
                try:
                    v = _e2e_variant(args, data, Path(tmp) / name, cache, decode,
                                     cpu_workers if workers is None else workers, augment)
                except Exception as exc:  # one variant's failure (a diverged run) leaves the others' figures
                    print(f"end to end, {name}: failed: {type(exc).__name__}: {exc}", flush=True)
                    continue
                variants[name] = v
                print(f"end to end, {args.jpegs} JPEGs, {name} ({what}; loader workers: {v['workers']}): "
                      f"{v['img_per_s']} img/s, data wait {v['data_wait_share']:.1%} of step time (target <= 5%), "
                      f"{v['wall_s']} s in all", flush=True)
        finally:
            if before is None:
                os.environ.pop("CNNLAB_CACHE", None)
            else:
                os.environ["CNNLAB_CACHE"] = before
    return {"jpegs": args.jpegs, "made_in_s": round(made, 1), "variants": variants}


def loop_against_bare(args, compile_: bool) -> dict:
    label = "compile" if compile_ else "eager"
    bare = bare_loop(args, compile_)
    ours = cnnlab_loop(args, compile_)
    flops = 3 * 2 * GMACS_RESNET50 * 1e9 * (args.size / 224) ** 2
    peak = peak_tflops()
    mfu = ours * flops / (peak * 1e12) if peak else None
    print(f"ResNet-50 {args.size}px bf16 channels_last {label}: bare {bare:.0f} img/s, cnnlab {ours:.0f} img/s, "
          f"ratio {ours / bare:.3f} (target >= 0.95)" + (f", MFU {mfu:.1%} of {peak:.0f} TFLOP/s" if mfu else ""),
          flush=True)
    return {"bare_img_s": round(bare, 1), "cnnlab_img_s": round(ours, 1), "ratio": round(ours / bare, 3),
            "mfu": round(mfu, 3) if mfu else None}


def run_end_to_end(args) -> dict:
    return end_to_end(args)  # each variant's line printed as it ends


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: check the script runs")
    parser.add_argument("--ablation", action="store_true",
                        help="eager only: bare against each variant of cnnlab's loop (checks off, plain Lightning), "
                             "then a profile of cnnlab's steps")
    parser.add_argument("--e2e", action="store_true", help="only the end-to-end run on JPEGs (the data wait)")
    parser.add_argument("--compiled", action="store_true", help="only the compiled loops: bare against cnnlab, MFU")
    parser.add_argument("--rounds", type=int, default=2, help="ablation: rounds of alternated runs")
    args = parser.parse_args()
    cuda = torch.cuda.is_available() and not args.smoke
    args.device = torch.device("cuda" if cuda else "cpu")
    args.precision = "bf16-mixed"
    args.batch, args.size, args.warmup, args.steps = (256, 224, 15, 50) if cuda else (4, 64, 1, 2)
    args.jpegs, args.jpeg_size = (5000, 256) if cuda else (40, 72)
    if cuda:
        torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name() if cuda else "CPU (smoke test)"
    print(f"device: {name}", flush=True)

    results = {"device": name}
    if args.ablation:
        args.profile_steps = 10 if cuda else 2
        results["ablation"] = loop_ablation(args)
        print(json.dumps(results))
        return
    if args.e2e:
        results["end_to_end"] = run_end_to_end(args)
    else:  # eager first, then end to end, then compiled: the figures that matter most come out first
        modes = (True,) if args.compiled else (False, True) if cuda else (False,)  # smoke: no compiled ResNet-50
        for compile_ in modes:
            results["compile" if compile_ else "eager"] = loop_against_bare(args, compile_)
            if not compile_:
                results["end_to_end"] = run_end_to_end(args)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
