"""One ``standard`` augmentation call, the grouped v2 path (loader) against the batched one (device).

On a GPU every aten op is a kernel launch that costs the host 5-10 us, so the op count of a call is the
host time it needs there; on this CPU the figures are the ops' own work. For a uint8 batch of
``--batch`` x 3 x ``--size`` x ``--size``: the median time of ``--rounds`` calls (after one warm-up) and
the aten ops of one call (torch.profiler), for each path, and the op counts at a batch of 8 beside them
(the batched path's do not grow with the batch; the grouped path's grow by one group's ops per 8 images),
and the batched path's split into the parameters' draw (CPU, in the loader) and the ops on the batch.
Pass ``--device cuda`` on a GPU machine.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/augment_ops.py [--batch 256] [--size 224] [--rounds 3]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile

from cnnlab.config import AugmentConfig
from cnnlab.data.augment_batches import build_augmentation
from cnnlab.data.batched_augment import build_batched_augmentation


def aten_ops(fn) -> int:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(e.name.startswith("aten::") for e in prof.events())


def seconds(fn, rounds: int, device: torch.device) -> float:
    fn()  # warm-up: allocator, kernels
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--preset", default="standard")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device, cfg, size = torch.device(args.device), AugmentConfig(preset=args.preset), (args.size, args.size)
    grouped, batched = build_augmentation(cfg, 3, size), build_batched_augmentation(cfg, 3, size)
    x = torch.randint(0, 256, (args.batch, 3, *size), dtype=torch.uint8, device=device)
    print(f"{args.preset}, {args.batch}x3x{args.size}x{args.size} uint8 on {device}, torch threads "
          f"{torch.get_num_threads()}, median of {args.rounds}")
    small = x[:8].clone()
    for name, call in (("grouped v2", lambda b: grouped(b)), ("batched", lambda b: batched(b, 1))):
        t = seconds(lambda: call(x), args.rounds, device)
        print(f"{name:>10}: {t * 1e3:8.1f} ms a call   aten ops a call: {aten_ops(lambda: call(x)):6d} "
              f"(batch of 8: {aten_ops(lambda: call(small)):d})")
    # in training the loader draws the parameters (on the CPU, in its workers): the rest runs on the device
    params = batched.parameters(len(x), 1)
    print(f"   batched: of its ops, {aten_ops(lambda: batched.parameters(len(x), 1))} draw the parameters on the "
          f"CPU and {aten_ops(lambda: batched(x, params=params))} run on the batch's device")


if __name__ == "__main__":
    main()
