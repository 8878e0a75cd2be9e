"""Is a 0.9 really right nine times in ten? Temperature scaling and the expected calibration error.

Guo et al. 2017, "On Calibration of Modern Neural Networks" (ICML, arXiv:1706.04599): one scalar T
divides the logits, fitted on the negative log-likelihood of held-out images; the predicted class never
changes, only the confidence. The ECE (15 equal-width bins, the L1 gap between confidence and accuracy,
weighted by the bin's share) is torchmetrics'.

What the method leaves open, and how it is decided here (``decide``):

- Which images. The validation split also chose the checkpoint, and a fit scored on the images it was
  fitted on says nothing. So T is cross-validated within the validation split: each of ``FOLDS`` folds
  is scaled by the T fitted on the others, and T is kept only if that lowers the out-of-fold NLL. The
  figures reported are those out-of-fold ones.
- What the NLL cannot see. Minimising it on images with no mistakes drives T towards 0 (a model that is
  always right should be certain), and a 4-epoch model right on 72 of 72 images got T = 0.064: every test
  answer, mistakes included, became >= 0.9999 sure. So no mistakes: no temperature (T = 1), on the whole
  split and on each fold's fitting images alike, so that the folds score the procedure that is kept.
- How far. T lies in [``T_MIN``, ``T_MAX``]. Guo et al. correct overconfident networks, with T > 1. An
  underconfident model (a few epochs, dropout, augmentation) may be sharpened, but at most by halving T
  (doubling every logit margin), so that a few mistakes never make a model certain. cnn-small after 4 epochs
  on digits 0-3, 1-2 mistakes among 72 validation images, fits T = 0.22-0.62 unbounded; within the bounds
  (0.50-0.62) it cut the test ECE 1.9-4.0x in each of 4 seeds (unbounded: 1.9-5.1x), its mistakes' mean
  probability 0.66-0.81 (unbounded: 0.66-0.89; benchmarks/trust.py).
  At T = 10 a margin of 20 between two logits becomes 2 (88% against 12%): a fit that wants more says the
  model is mostly wrong, which a temperature cannot mend.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torchmetrics.functional.classification import multiclass_calibration_error

from cnnlab.artifacts import Calibration, OutOfFold, ReliabilityBin

BINS = 15
T_MIN, T_MAX = 0.5, 10.0  # the bounds of a temperature (see above)
FOLDS = 5  # cross-validation folds within the validation split
MIN_IMAGES = 50  # fewer validation images: no temperature (folds of under 10 images measure nothing)
MIN_GAIN = 1e-4  # out-of-fold NLL (nats an image) a temperature must save to be kept: T = 1.0000004 is not one


def nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    """The mean negative log-likelihood of softmax(logits / T), in float64."""
    z = torch.as_tensor(logits).detach().double() / temperature
    return float(torch.nn.functional.cross_entropy(z, torch.as_tensor(labels).long()))


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, bounds: tuple[float, float] = (T_MIN, T_MAX)) -> float:
    """The temperature within ``bounds`` that minimises the NLL of softmax(logits / T).

    The NLL is convex in 1/T, so it has one minimum along log T, and the bounded minimum is the unbounded
    one clipped to ``bounds``: SciPy's bounded Brent search on log T finds it."""
    from scipy.optimize import minimize_scalar

    low, high = bounds
    if low == high:
        return float(low)
    z, y = torch.as_tensor(logits).detach().double().clone(), torch.as_tensor(labels).long().clone()
    found = minimize_scalar(lambda log_t: nll(z, y, math.exp(log_t)), bounds=(math.log(low), math.log(high)),
                            method="bounded", options={"xatol": 1e-6})
    t = math.exp(float(found.x))
    return min(max(t, low), high) if math.isfinite(t) else 1.0


def ece(probs: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray, bins: int = BINS) -> float:
    probs, labels = torch.as_tensor(probs).float(), torch.as_tensor(labels).long()
    return float(multiclass_calibration_error(probs, labels, num_classes=probs.shape[1], n_bins=bins, norm="l1"))


def uncalibrated(probs: torch.Tensor | np.ndarray, temperature: float) -> torch.Tensor:
    """The probabilities before temperature scaling, from those after: softmax(T x log p) = softmax(z)."""
    probs = torch.as_tensor(probs).double()
    return torch.softmax(probs.clamp_min(1e-300).log() * temperature, dim=1).float()


def reliability(probs: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray,
                bins: int = BINS) -> list[ReliabilityBin]:
    """Per confidence bin: its range, image count, mean confidence and accuracy (the reliability diagram)."""
    probs, labels = torch.as_tensor(probs).float(), torch.as_tensor(labels).long()
    conf, pred = probs.max(dim=1)
    edges = torch.linspace(0, 1, bins + 1)
    which = torch.bucketize(conf, edges[1:-1], right=True)
    rows = []
    for b in range(bins):
        mask = which == b
        n = int(mask.sum())
        rows.append(ReliabilityBin(low=float(edges[b]), high=float(edges[b + 1]), n=n,
                                   confidence=float(conf[mask].mean()) if n else None,
                                   accuracy=float((pred[mask] == labels[mask]).float().mean()) if n else None))
    return rows


def folds(labels: np.ndarray, k: int, seed: int):
    """Stratified folds where every class has an image in each, else plain shuffled ones."""
    from sklearn.model_selection import KFold, StratifiedKFold

    counts = np.bincount(labels)
    if counts[counts > 0].min() >= k:
        return StratifiedKFold(k, shuffle=True, random_state=seed).split(labels, labels)
    return KFold(k, shuffle=True, random_state=seed).split(labels)


def cross_validated(logits: torch.Tensor, labels: torch.Tensor, bounds: tuple[float, float], k: int = FOLDS,
                    seed: int = 0) -> tuple[torch.Tensor, list[float]]:
    """Each fold's logits divided by the temperature fitted on the other folds (1 where those hold no
    mistake, as for the whole split), and those temperatures."""
    z, y = torch.as_tensor(logits).detach().double(), torch.as_tensor(labels).long()
    scaled, temps = torch.empty_like(z), []
    for fit_idx, held_idx in folds(y.numpy(), k, seed):
        right = bool((z[fit_idx].argmax(1) == y[fit_idx]).all())
        t = 1.0 if right else fit_temperature(z[fit_idx], y[fit_idx], bounds)
        scaled[held_idx] = z[held_idx] / t
        temps.append(t)
    return scaled, temps


def decide(logits: torch.Tensor, labels: torch.Tensor, k: int = FOLDS, seed: int = 0) -> Calibration:
    """Whether the evidence supports a temperature, and which (module docstring): the record that
    calibration.json keeps. ``temperature`` is 1.0 unless ``kept``; the out-of-fold figures are measured
    on images that did not fit the temperature they were scaled by."""
    z, y = torch.as_tensor(logits).detach().double(), torch.as_tensor(labels).long()
    n, errors = int(len(y)), int((z.argmax(1) != y).sum())
    bounds = (T_MIN, T_MAX)
    record = dict(method="temperature scaling (Guo et al. 2017), cross-validated", split="val", n=n, errors=errors,
                  bins=BINS, bounds=list(bounds), folds=k, kept=False, temperature=1.0)
    if n < MIN_IMAGES:
        return Calibration(**record, reason=f"too few validation images to fit and check a temperature "
                                            f"({n} < {MIN_IMAGES})")
    if errors == 0:
        return Calibration(**record, reason=f"no mistakes on the {n} validation images to learn a temperature from "
                                            f"(the NLL would only sharpen)")
    scaled, temps = cross_validated(z, y, bounds, k, seed)
    oof = OutOfFold(ece_before=ece(z.softmax(1), y), ece_after=ece(scaled.softmax(1), y), nll_before=nll(z, y),
                    nll_after=nll(scaled, y))
    fitted = fit_temperature(z, y, bounds)
    kept = oof.nll_after < oof.nll_before - MIN_GAIN
    reason = "it lowers the out-of-fold NLL" if kept else \
        f"it does not lower the out-of-fold NLL, {oof.nll_before:.4f} -> {oof.nll_after:.4f}"
    return Calibration(**{**record, "kept": kept, "temperature": fitted if kept else 1.0}, fitted_temperature=fitted,
                       fold_temperatures=temps, out_of_fold=oof, reason=reason)


def describe(info: Calibration) -> str:
    """calibration.json in one line: the temperature kept and its out-of-fold figures, or why none."""
    if not info.kept:
        return f"calibration: no temperature, the probabilities stay as trained (T = 1): {info.reason}"
    oof = info.out_of_fold
    if not oof:  # a run calibrated before the cross-validation: its figures were on the images that fitted T
        return f"calibration: temperature {info.temperature:.3f}, fitted on {info.n} validation images"
    return (f"calibration: temperature {info.temperature:.3f} ({info.folds}-fold cross-validation on "
            f"{info.n} validation images, T in [{info.bounds[0]:g}, {info.bounds[1]:g}]); out-of-fold ECE "
            f"{oof.ece_before:.4f} -> {oof.ece_after:.4f}, NLL {oof.nll_before:.4f} -> {oof.nll_after:.4f}")
