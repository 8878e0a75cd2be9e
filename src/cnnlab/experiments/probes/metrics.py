"""Classification metrics, exactly: the accuracy paradox, ROC-AUC as the Mann-Whitney U statistic, the
precision/recall trade-off, and temperature scaling on an overfitted network. cnnlab's own figures
(``classification_metrics``, ``calibration``) are checked against SciPy and scikit-learn."""
from __future__ import annotations

import numpy as np
import torch
from sklearn import metrics as skm

from cnnlab.experiments.probes.common import accuracy, arrays, curve, mlp


def paradox(seed: int, data: str, n: int = 10_000, rare: float = 0.01) -> dict:
    """A constant "always the common class" classifier at 1:99: cnnlab's figures against the exact values."""
    from cnnlab.evaluation.metrics import classification_metrics

    y = np.zeros(n, dtype=int)
    y[np.random.default_rng(seed).choice(n, int(n * rare), replace=False)] = 1
    probs = np.tile([1.0, 0.0], (n, 1))  # every image: the common class, with the same score
    m = classification_metrics(y, probs, ["common", "rare"])
    auc = skm.roc_auc_score(y, probs[:, 1])
    rare_class = m.per_class["rare"]
    return {"scalars": {"accuracy": m.accuracy, "accuracy_error": abs(m.accuracy - (1 - rare)),
                        "rare_recall_plus_f1": rare_class.recall + rare_class.f1, "roc_auc": auc,
                        "roc_auc_error": abs(auc - 0.5), "balanced_accuracy": m.balanced_accuracy}}


def _scores(seed: int, n_pos: int, n_neg: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and overlapping scores, rounded so that ties occur (the rank formula counts a tie as 1/2)."""
    rng = np.random.default_rng(seed)
    s = np.round(np.concatenate([rng.normal(1.0, 1.0, n_pos), rng.normal(0.0, 1.0, n_neg)]), 1)
    return np.concatenate([np.ones(n_pos, int), np.zeros(n_neg, int)]), s


def roc_auc(seed: int, data: str, n_pos: int = 300, n_neg: int = 700) -> dict:
    """ROC-AUC three ways (scikit-learn; Mann-Whitney U / (n+ n-) from SciPy; the share of (positive,
    negative) pairs ranked right, ties half) and after strictly increasing transforms of the scores."""
    from scipy.stats import mannwhitneyu

    y, s = _scores(seed, n_pos, n_neg)
    auc = skm.roc_auc_score(y, s)
    u = mannwhitneyu(s[y == 1], s[y == 0]).statistic / (n_pos * n_neg)
    diff = s[y == 1][:, None] - s[y == 0][None, :]
    pairs = float((diff > 0).mean() + 0.5 * (diff == 0).mean())
    moved = [skm.roc_auc_score(y, f(s)) for f in (lambda v: v ** 3 + v, np.exp, lambda v: 1 / (1 + np.exp(-3 * v)))]
    return {"scalars": {"roc_auc": auc, "mann_whitney_error": max(abs(u - auc), abs(pairs - auc)),
                        "monotone_change": max(abs(a - auc) for a in moved)}}


def pr_curve(seed: int, data: str, n_pos: int = 300, n_neg: int = 700) -> dict:
    """Precision and recall at every threshold, counted directly, against scikit-learn's curve; recall
    can only fall as the threshold rises (precision need not rise)."""
    y, s = _scores(seed, n_pos, n_neg)
    precision, recall, thresholds = skm.precision_recall_curve(y, s)
    own_p, own_r = [], []
    for t in thresholds:
        predicted = s >= t
        tp = int((predicted & (y == 1)).sum())
        own_p.append(tp / int(predicted.sum()))
        own_r.append(tp / n_pos)
    error = max(np.abs(np.array(own_p) - precision[:-1]).max(), np.abs(np.array(own_r) - recall[:-1]).max())
    return {"scalars": {"curve_error": float(error), "recall_rises": float((np.diff(own_r) > 0).sum()),
                        "average_precision": skm.average_precision_score(y, s)},
            "curves": {"precision": curve("recall", own_r, own_p)}}


def temperature(seed: int, data: str, n: int = 600, steps: int = 200, width: int = 256) -> dict:
    """An MLP overfitted on ``n`` training images (Adam, no regularisation), then cnnlab's cross-validated
    temperature on the held-out images: accuracy, and the out-of-fold ECE and NLL before and after."""
    from cnnlab.calibration import decide

    torch.manual_seed(seed)
    d = arrays(data, n)
    model = mlp([d.x.shape[1], width, width, d.classes], "relu", "he")
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):  # full batch, far past 100% training accuracy: the NLL overfits
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(d.x), d.y).backward()
        opt.step()
    with torch.no_grad():
        logits = model(d.x_test).double()
    info = decide(logits, d.y_test, seed=seed)
    t = info.fitted_temperature if info.fitted_temperature is not None else 1.0
    oof = info.out_of_fold.model_dump() if info.out_of_fold is not None else {}
    right = [(z.argmax(1) == d.y_test).double().mean() for z in (logits, logits / t)]
    return {"scalars": {"temperature": t, "train_accuracy": accuracy(model, d.x, d.y), "test_accuracy": float(right[0]),
                        "accuracy_change": float(abs(right[1] - right[0])), **oof,
                        **({"nll_ratio": oof["nll_before"] / oof["nll_after"],
                            "ece_gain": oof["ece_before"] - oof["ece_after"]} if oof else {})}}
