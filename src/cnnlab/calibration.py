"""Is a 0.9 really right nine times in ten? Temperature scaling and the expected calibration error.

Guo et al. 2017, "On Calibration of Modern Neural Networks": one scalar T divides the logits,
fitted by LBFGS on the negative log-likelihood of held-out images; the predicted class never
changes, only the confidence. The ECE (15 equal-width bins, the L1 gap between confidence and
accuracy, weighted by the bin's share) is torchmetrics'.
"""
from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional.classification import multiclass_calibration_error

BINS = 15


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, steps: int = 100) -> float:
    """The temperature T > 0 that minimises the NLL of softmax(logits / T) (optimised as log T)."""
    logits, labels = logits.detach().double().clone(), labels.detach().long().clone()  # inference tensors too
    log_t = torch.zeros((), dtype=torch.double, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    return t if np.isfinite(t) and t > 0 else 1.0


def ece(probs: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray, bins: int = BINS) -> float:
    probs, labels = torch.as_tensor(probs).float(), torch.as_tensor(labels).long()
    return float(multiclass_calibration_error(probs, labels, num_classes=probs.shape[1], n_bins=bins, norm="l1"))


def uncalibrated(probs: torch.Tensor | np.ndarray, temperature: float) -> torch.Tensor:
    """The probabilities before temperature scaling, from those after: softmax(T x log p) = softmax(z)."""
    probs = torch.as_tensor(probs).double()
    return torch.softmax(probs.clamp_min(1e-300).log() * temperature, dim=1).float()


def reliability(probs: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray, bins: int = BINS) -> list[dict]:
    """Per confidence bin: its range, image count, mean confidence and accuracy (the reliability diagram)."""
    probs, labels = torch.as_tensor(probs).float(), torch.as_tensor(labels).long()
    conf, pred = probs.max(dim=1)
    edges = torch.linspace(0, 1, bins + 1)
    which = torch.bucketize(conf, edges[1:-1], right=True)
    rows = []
    for b in range(bins):
        mask = which == b
        n = int(mask.sum())
        rows.append({"low": float(edges[b]), "high": float(edges[b + 1]), "n": n,
                     "confidence": float(conf[mask].mean()) if n else None,
                     "accuracy": float((pred[mask] == labels[mask]).float().mean()) if n else None})
    return rows
