"""The README's first command: mnist-5k -> the default CNN -> metrics on the 1,000 test digits."""
from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

# The default model with light geometric augmentation and a one-cycle schedule: >= 98% test accuracy
# in ~45 s on a 2-core CPU (benchmarks/time_to_accuracy.py measures exactly these settings).
SETTINGS = {"epochs": 15, "batch_size": 64, "lr": 0.003, "schedule": "onecycle", "val_split": 0.05,
            "rotation": 10.0, "translate": 0.1, "zoom": [0.9, 1.1]}


def as_flags(settings: dict = SETTINGS) -> list[str]:
    flags = []
    for key, value in settings.items():
        text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        flags += [f"--{key.replace('_', '-')}", text]
    return flags


def run(directory: Path, **overrides):
    from cnnlab.data.samples import export
    from cnnlab.evaluation.metrics import evaluate
    from cnnlab.training.fit import train

    data = directory / "mnist-5k"
    counts = export("mnist-5k", data)
    log.info(f"mnist-5k: {counts['train']} train / {counts['test']} test digits in {data}")
    result = train(data, directory / "run", overwrite=True, **{**SETTINGS, **overrides})
    return data, result, evaluate(result.run_dir, data)
