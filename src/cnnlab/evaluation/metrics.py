"""``cnnlab.evaluate``: a run on a labelled dataset -> accuracy, precision, recall, F1, confusion matrix.

The figures are scikit-learn's, computed on the predictions of the same Predictor that
``cnnlab predict`` uses, so evaluation and prediction cannot disagree.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from sklearn import metrics as skm

from cnnlab import files
from cnnlab.console import console
from cnnlab.data.datasets import decode_entries
from cnnlab.data.sources import Skipped, only_split, scan
from cnnlab.errors import CnnlabError
from cnnlab.evaluation.plots import confusion_matrix_png
from cnnlab.inference.predictor import Predictor, load

CHUNK = 2048  # images decoded at a time: bounded memory on large test sets


def predict_dataset(predictor: Predictor, data: Union[str, Path]) -> tuple[np.ndarray, torch.Tensor, list, list[Skipped]]:
    """Targets, model outputs, paths and skipped files for the test split of DATA (or all of it)."""
    found = only_split(scan(data, predictor.task), "test")
    if predictor.task == "classification":
        unknown = sorted(set(found.classes) - set(predictor.classes))
        if unknown:
            raise CnnlabError(f"{data} has classes the model was not trained on: {', '.join(unknown)} "
                              f"(the model knows: {', '.join(predictor.classes)})")
    index = {c: i for i, c in enumerate(predictor.classes)}
    targets, outputs, paths, skipped = [], [], [], list(found.skipped)
    for start in range(0, len(found.entries), CHUNK):
        chunk = found.entries[start:start + CHUNK]
        images, ok, bad = decode_entries(chunk, predictor.pre.channels, predictor.pre.size, keep=True,
                                         interpolation=predictor.pre.interpolation)
        skipped += bad
        if ok:
            outputs.append(predictor.outputs(images))
        for i in ok:
            e = chunk[i]
            targets.append(float(e.label) if predictor.task == "regression" else index[str(e.label)])
            paths.append(str(e.path))
    if not targets:
        raise CnnlabError(f"no usable images in {data}")
    return np.asarray(targets), torch.cat(outputs), paths, skipped


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict:
    labels = list(range(len(classes)))
    y_pred = probs.argmax(axis=1)
    result: dict = {"classes": classes, "n": int(len(y_true)), "accuracy": float(skm.accuracy_score(y_true, y_pred))}
    for avg in ("macro", "weighted", "micro"):
        p, r, f, _ = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, average=avg, zero_division=0)
        result.update({f"precision_{avg}": float(p), f"recall_{avg}": float(r), f"f1_{avg}": float(f)})
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, average=None, zero_division=0)
    result["per_class"] = {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                           for i, c in enumerate(classes)}
    result["top_k_accuracy"] = {
        str(k): float(skm.top_k_accuracy_score(y_true, probs, k=k, labels=labels))
        for k in (2, 3, 5) if k < len(classes)
    }
    result["confusion_matrix"] = skm.confusion_matrix(y_true, y_pred, labels=labels).tolist()
    return result


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    return {
        "n": int(len(y_true)),
        "mae": float(skm.mean_absolute_error(y_true, y_pred)),
        "rmse": float(np.sqrt(skm.mean_squared_error(y_true, y_pred))),
        "r2": float(skm.r2_score(y_true, y_pred)) if len(y_true) > 1 else float("nan"),
    }


def evaluate_with_outputs(run: Union[str, Path, Predictor], data: Union[str, Path], json_path=None, plot: bool = True):
    """``evaluate`` that also returns the targets, model outputs and paths behind the figures."""
    predictor = run if isinstance(run, Predictor) else load(run)
    y_true, outputs, paths, skipped = predict_dataset(predictor, data)
    if predictor.task == "classification":
        result = classification_metrics(y_true, outputs.numpy(), predictor.classes)
    else:
        result = regression_metrics(y_true, outputs.numpy()[:, 0])
    result["data"] = str(data)
    result["skipped"] = [{"path": str(s.path), "reason": s.reason} for s in skipped]
    run_dir = predictor.run.path
    if plot and predictor.task == "classification":
        cm = np.asarray(result["confusion_matrix"])
        confusion_matrix_png(cm, predictor.classes, run_dir / "confusion_matrix.png")
        confusion_matrix_png(cm, predictor.classes, run_dir / "confusion_matrix_normalized.png", normalize=True)
    files.write_json(run_dir / "evaluation.json", result)
    if json_path is not None:
        files.write_json(json_path, result)
    if skipped:
        console.print(f"[yellow]skipped {len(skipped)} unusable files[/] (listed in evaluation.json)")
    return result, y_true, outputs, paths


def evaluate(run: Union[str, Path, Predictor], data: Union[str, Path], json_path: Optional[Union[str, Path]] = None,
             plot: bool = True) -> dict:
    """Evaluate a run on DATA (its test/ split if it has one); also writes evaluation.json and the
    confusion-matrix PNGs into the run directory."""
    return evaluate_with_outputs(run, data, json_path, plot)[0]
