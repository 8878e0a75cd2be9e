"""Helpers shared by the benchmarks: a scratch folder and the mnist-5k export."""
from __future__ import annotations

from pathlib import Path

from cnnlab.data.samples import export

SCRATCH = Path(__file__).resolve().parent.parent / ".bench"


def mnist_5k() -> Path:
    path = SCRATCH / "mnist-5k"
    export("mnist-5k", path)
    return path


def verdict(value: float, target: float, higher_is_better: bool) -> str:
    ok = value >= target if higher_is_better else value <= target
    return "MET" if ok else "NOT MET"
