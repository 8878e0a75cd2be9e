"""After training: temperature scaling, cross-validated within the validation split, written to
RUN/calibration.json (what was decided and why: ``cnnlab.calibration.decide``).

Prediction, evaluation and serving divide the logits by this temperature (``Run.temperature()``), so the
probabilities they report are calibrated; the predicted classes are the same. A temperature the evidence
does not support is recorded as not kept, with T = 1: the probabilities stay as trained.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import torch
from torch.utils.data import DataLoader

from cnnlab import rundir
from cnnlab.data.datasets import batch_collate
from cnnlab.calibration import decide, describe

log = logging.getLogger(__name__)


@torch.no_grad()
def _logits(task, dataset, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    logits, labels = [], []
    for x, y in DataLoader(dataset, batch_size=256, collate_fn=batch_collate):
        out = task(x.to(device))
        logits.append((out[0] if isinstance(out, tuple) else out).float().cpu())
        labels.append(y)
    return torch.cat(logits), torch.cat(labels)


def calibrate_run(task, datamodule, out: Path, device: torch.device, seed: int = 0) -> Optional[dict]:
    """Decide the temperature on the run's validation images with the weights just saved; None without any."""
    val = datamodule.prepared.datasets.get("val")
    if val is None or len(val) == 0:
        log.info("no validation images: the probabilities are not calibrated (give --val-split)")
        return None
    was_training = task.training
    task.eval().to(device)
    try:
        logits, labels = _logits(task, val, device)
    finally:
        task.train(was_training)
    if not bool(torch.isfinite(logits).all()):
        log.warning("the model gives non-finite outputs on validation images: not calibrated")
        return None
    info = decide(logits, labels, seed=seed)
    rundir.write_calibration(out, info)
    log.info(describe(info))
    return info
