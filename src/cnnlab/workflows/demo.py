"""The README's first command: mnist-5k -> the default CNN -> metrics on the 1,000 test digits."""
from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def run(directory: Path, **overrides):
    """The defaults are the recipe (light augmentation, one-cycle, epochs chosen for the data size): the demo
    sets nothing of its own, so it shows what `cnnlab train DATA` gives (benchmarks/time_to_accuracy.py:
    >= 98% test accuracy in under 60 s on a 2-core CPU)."""
    from cnnlab.data.samples import export
    from cnnlab.evaluation.metrics import evaluate
    from cnnlab.training.fit import train

    data = directory / "mnist-5k"
    counts = export("mnist-5k", data)
    log.info(f"mnist-5k: {counts['train']} train / {counts['test']} test digits in {data}")
    result = train(data, directory / "run", overwrite=True, **overrides)
    return data, result, evaluate(result.run_dir, data)
