"""Bit-identical resume on a GPU with --deterministic (issue #25 item 3).

Three trainings of ResNet-18 on mnist-5k (64 px, bf16-mixed, the standard augmentation on the device, dropout,
channels_last), all with ``--deterministic``: one uninterrupted, a second uninterrupted, and one SIGKILLed in the
middle of its second epoch and resumed with ``--resume`` (tests/kills.py, the harness of
tests/training/test_resume.py). Then two uninterrupted runs without ``--deterministic``, to show what the flag
buys (cuDNN's fastest kernels are allowed to add in any order).

Prints one JSON line: whether the weights' bytes are identical in each comparison, and the seconds of each run.

Run: python benchmarks/gpu_resume.py            (on a GPU machine: about 1.5 minutes)
     python benchmarks/gpu_resume.py --smoke    (the CPU, cnn-small on digits: the same comparisons)
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from kills import killed_then_resumed, tensors_sha256  # noqa: E402

import cnnlab  # noqa: E402
from cnnlab import rundir  # noqa: E402
from cnnlab.data import samples  # noqa: E402


def settings(smoke: bool, deterministic: bool) -> dict:
    common = {"epochs": 2, "dropout": 0.2, "progress": False, "deterministic": deterministic, "seed": 3}
    if smoke:
        return {**common, "blocks": [{"filters": 4}, {"filters": 8}], "dense": [16], "augment": "light",
                "batch_size": 32}
    return {**common, "model": "resnet18", "weights": "none", "input_size": 64, "precision": "bf16-mixed",
            "augment": "standard", "channels_last": True, "batch_size": 128}


def timed_train(data: Path, out: Path, config: dict) -> float:
    start = time.perf_counter()
    cnnlab.train(data, out, **config)
    return round(time.perf_counter() - start, 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="the CPU, tiny sizes: the script's steps run")
    args = parser.parse_args()
    smoke = args.smoke or not torch.cuda.is_available()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        samples.export("digits" if smoke else "mnist-5k", tmp / "data")
        data = tmp / "data" / "train"
        det, fast = settings(smoke, True), settings(smoke, False)
        seconds = {name: timed_train(data, tmp / name, cfg)
                   for name, cfg in (("a", det), ("b", det), ("fast_a", fast), ("fast_b", fast))}
        start = time.perf_counter()
        proc = killed_then_resumed(data, tmp / "resumed", 1, 3, det)  # killed at epoch 2's 4th step
        seconds["killed_and_resumed"] = round(time.perf_counter() - start, 1)
        digest = {name: tensors_sha256(tmp / name / rundir.WEIGHTS) if (tmp / name / rundir.WEIGHTS).exists() else None
                  for name in ("a", "b", "resumed", "fast_a", "fast_b")}
    result = {
        "device": "CPU (smoke test)" if smoke else torch.cuda.get_device_name(),
        "deterministic_runs_identical": digest["a"] == digest["b"],
        "resumed_identical_to_uninterrupted": proc.returncode == 0 and digest["resumed"] == digest["a"],
        "resume_rc": proc.returncode,
        "runs_without_deterministic_identical": digest["fast_a"] == digest["fast_b"],
        "seconds": seconds,
    }
    if proc.returncode != 0:
        result["resume_stderr"] = proc.stderr[-600:]
    print(json.dumps(result), flush=True)
    sys.exit(0 if result["deterministic_runs_identical"] and result["resumed_identical_to_uninterrupted"] else 1)


if __name__ == "__main__":
    main()
