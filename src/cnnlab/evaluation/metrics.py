"""``cnnlab.evaluate``: a run on a labelled dataset -> accuracy, precision, recall, F1, confusion matrix.

The figures are scikit-learn's, computed on the predictions of the same Predictor that
``cnnlab predict`` uses, so evaluation and prediction cannot disagree.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from sklearn import metrics as skm

from cnnlab import files
from cnnlab.artifacts import Calibration, CalibrationFigures, ClassFigures, Evaluation, SkippedFile
from cnnlab.data.datasets import decode_entries
from cnnlab.data.sources import Entry, Skipped, only_split, scan
from cnnlab.errors import CnnlabError
from cnnlab.calibration import BINS, ece, reliability, uncalibrated
from cnnlab.evaluation.plots import confusion_matrix_png
from cnnlab.inference.predictor import Predictor, load
from cnnlab.catalog.names import Monitor, Split, Task, listed
from cnnlab.rundir import confusion_paths, evaluation_path, write_evaluation

log = logging.getLogger(__name__)

CHUNK = 2048  # images decoded at a time: bounded memory on large test sets


@dataclass
class Chosen:
    """The images an evaluation scores, and what they are."""

    entries: list
    skipped: list
    split: str  # test, val or all
    own: bool  # the run's own dataset (its held-out images come from split.csv)


def choose_images(predictor: Predictor, data: Union[str, Path], split: str = "auto") -> Chosen:
    """The run's own data: its held-out images from split.csv (test, else val; ``all`` for every image).
    Other data: its test/ split if it has one, else all of it."""
    if split not in set(Split):
        raise CnnlabError(f"unknown split '{split}'. Known: {listed(Split)}")
    run = predictor.run
    own_path = run.config.data.path
    own = own_path is not None and Path(data).expanduser().resolve() == Path(own_path).resolve()
    rows = run.split() if own and split != Split.ALL else []
    if rows:
        return _held_out(run, data, rows, split)
    return _from_folder(predictor, data, split, own)


def _held_out(run, data: Union[str, Path], rows: list[dict], split: str) -> Chosen:
    """The run's own held-out images of ``split`` (auto: test, else val), as split.csv lists them."""
    held = {s for r in rows for s in [r["split"]] if s in (Split.TEST, Split.VAL)}
    which = split if split != Split.AUTO else next((s for s in (Split.TEST, Split.VAL) if s in held), None)
    if which is None or which not in held:
        raise CnnlabError(f"{run.path} has no held-out {which or 'test or val'} images of {data}: it trained on "
                          f"every one. Evaluate on other data, or score its training images with --split all")
    entries = [Entry(Path(r["path"]), r["label"], which) for r in rows if r["split"] == which]
    return Chosen(entries, [], which, True)


def _from_folder(predictor: Predictor, data: Union[str, Path], split: str, own: bool) -> Chosen:
    """Images read from ``data``'s own layout: its ``split`` (auto: test/) if it has splits, else all of it."""
    found = scan(data, predictor.task)
    if split == Split.ALL or not found.given_splits:
        if own:
            log.warning(f"scoring every image of {data}, the training images included: "
                        f"the figures are optimistic")
        return Chosen(found.entries, list(found.skipped), Split.ALL, own)
    which = Split.TEST if split == Split.AUTO else Split(split)
    part = only_split(found, which)
    return Chosen(part.entries, list(part.skipped), which, own)


def predict_dataset(predictor: Predictor, data: Union[str, Path],
                    split: str = "auto") -> tuple[np.ndarray, torch.Tensor, list, list[Skipped], Chosen]:
    """Targets, model outputs, paths and skipped files of the images ``choose_images`` picks."""
    chosen = choose_images(predictor, data, split)
    if predictor.task == Task.CLASSIFICATION:
        unknown = sorted({str(e.label) for e in chosen.entries} - set(predictor.classes))
        if unknown:
            raise CnnlabError(f"{data} has classes the model was not trained on: {', '.join(unknown)} "
                              f"(the model knows: {', '.join(predictor.classes)})")
    index = {c: i for i, c in enumerate(predictor.classes)}
    targets, outputs, paths, skipped = [], [], [], list(chosen.skipped)
    for start in range(0, len(chosen.entries), CHUNK):
        chunk = chosen.entries[start:start + CHUNK]
        images, ok, bad = decode_entries(chunk, predictor.pre.channels, predictor.pre.size, keep=True,
                                         interpolation=predictor.pre.interpolation)
        skipped += bad
        if ok:
            outputs.append(predictor.outputs(images))
        for i in ok:
            e = chunk[i]
            targets.append(float(e.label) if predictor.task == Task.REGRESSION else index[str(e.label)])
            paths.append(str(e.path))
    if not targets:
        raise CnnlabError(f"no usable images in {data}")
    return np.asarray(targets), torch.cat(outputs), paths, skipped, chosen


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, classes: list[str]) -> Evaluation:
    """scikit-learn's figures. Classes with no image in ``y_true`` have no recall: they are n/a (None) per
    class and left out of the macro and weighted averages, which would otherwise count them as 0."""
    labels = list(range(len(classes)))
    present = sorted({int(t) for t in y_true})
    y_pred = probs.argmax(axis=1)
    figures: dict = {"classes": classes, "n": int(len(y_true)), "accuracy": float(skm.accuracy_score(y_true, y_pred)),
                     # the mean of the per-class recalls (of the classes present): what accuracy hides on imbalanced data
                     "balanced_accuracy": float(np.mean([(y_pred[y_true == c] == c).mean() for c in present]))}
    for avg in ("macro", "weighted", "micro"):
        p, r, f, _ = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels if avg == "micro" else present,
                                                         average=avg, zero_division=0)
        figures.update({f"precision_{avg}": float(p), f"recall_{avg}": float(r), f"f1_{avg}": float(f)})
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, average=None, zero_division=0)
    figures["per_class"] = {
        c: ClassFigures(precision=float(p[i]), recall=float(r[i]), f1=float(f[i]), support=int(s[i])) if s[i] else
        ClassFigures(precision=None, recall=None, f1=None, support=0)
        for i, c in enumerate(classes)}
    absent = [c for i, c in enumerate(classes) if not s[i]]
    if absent:
        figures["absent_classes"] = absent
    figures["top_k_accuracy"] = {
        str(k): float(skm.top_k_accuracy_score(y_true, probs, k=k, labels=labels))
        for k in (2, 3, 5) if k < len(classes)
    }
    figures["confusion_matrix"] = skm.confusion_matrix(y_true, y_pred, labels=labels).tolist()
    return Evaluation(**figures)


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> Evaluation:
    return Evaluation(
        n=int(len(y_true)),
        mae=float(skm.mean_absolute_error(y_true, y_pred)),
        rmse=float(np.sqrt(skm.mean_squared_error(y_true, y_pred))),
        r2=float(skm.r2_score(y_true, y_pred)) if len(y_true) > 1 else float("nan"),
    )


def _name(data: Union[str, Path]) -> str:
    path = Path(data).expanduser().resolve()
    return re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem if path.is_file() else path.name) or "data"


def calibration_figures(probs: torch.Tensor, y_true: np.ndarray, temperature: float, tta: bool,
                        fit: Optional[Calibration] = None, on_fit_images: bool = False) -> CalibrationFigures:
    """ECE (15 bins) of the probabilities before and after the run's temperature, and the reliability
    diagram's bins (after). With TTA the averaged probabilities have no single "before". ``fit``: the
    run's calibration.json; ``on_fit_images``: these are the images that fitted the temperature, so the
    figure that was not fitted on them is the record's out-of-fold one."""
    labels = torch.as_tensor(y_true).long()
    kept = fit.kept if fit else None
    return CalibrationFigures(
        temperature=temperature, bins=BINS, ece_before=None if tta else ece(uncalibrated(probs, temperature), labels),
        ece_after=ece(probs, labels), reliability=reliability(probs, labels), kept=kept,
        reason=fit.reason if fit else None, fitted_on_these_images=bool(on_fit_images and kept),
        out_of_fold=fit.out_of_fold if fit else None)


def split_note(run, chosen: Chosen) -> Optional[str]:
    """Words for a headline measured on the run's validation images, which chose its best epoch."""
    if not (chosen.own and chosen.split == Split.VAL):
        return None
    uses = []
    if str(run.training_info().get("monitor", Monitor.VAL_LOSS)).startswith("val"):
        uses.append("selected the model (its best epoch)")
    fit = run.calibration()
    if fit and fit.kept:
        uses.append("fitted its temperature")
    used = f", which also {' and '.join(uses)}" if uses else ""
    return (f"measured on validation images{used}: an optimistic figure. A test split (--test-split 0.1, or a "
            f"test/ folder) gives an unbiased one")


def _figures(predictor: Predictor, y_true: np.ndarray, outputs: torch.Tensor, tta: bool, chosen: Chosen) -> Evaluation:
    """The task's figures, and for classification the calibration's on these images."""
    if predictor.task == Task.REGRESSION:
        return regression_metrics(y_true, outputs.numpy()[:, 0])
    result = classification_metrics(y_true, outputs.numpy(), predictor.classes)
    fit = predictor.run.calibration()
    on_fit_images = chosen.own and chosen.split == (fit.split if fit else Split.VAL)
    result.calibration = calibration_figures(outputs, y_true, predictor.temperature, tta, fit, on_fit_images)
    return result


def _file_name(data: Union[str, Path], chosen: Chosen, tta: bool) -> Optional[str]:
    """None for the run's own held-out images, its headline (evaluation.json, the confusion-matrix PNGs, the
    server's /model); any other data, or the training images, go to evaluations/<name>.json. TTA figures
    sit beside the headline."""
    if chosen.own and chosen.split != Split.ALL and not tta:
        return None
    suffix = ('' if chosen.split in ('all', 'test') else '-' + chosen.split) + ("-tta" if tta else "")
    return f"{_name(data)}{suffix}"


def evaluate_with_outputs(run: Union[str, Path, Predictor], data: Union[str, Path], json_path=None, plot: bool = True,
                          split: str = "auto", device: str = "auto", tta: bool = False):
    """``evaluate_typed`` that also returns the targets, model outputs and paths behind the figures."""
    predictor = run if isinstance(run, Predictor) else load(run, device, tta=tta)
    tta = len(predictor.views) > 1
    y_true, outputs, paths, skipped, chosen = predict_dataset(predictor, data, split)
    result = _figures(predictor, y_true, outputs, tta, chosen)
    result.data, result.split, result.split_note = str(data), chosen.split, split_note(predictor.run, chosen)
    result.tta = [name for name, _ in predictor.views] if tta else None
    result.skipped = [SkippedFile(path=str(s.path), reason=s.reason) for s in skipped]
    run_dir, name = predictor.run.path, _file_name(data, chosen, tta)
    result.file = str(evaluation_path(run_dir, name))
    if plot and name is None and result.is_classification:
        cm = np.asarray(result.confusion_matrix)
        counts, normalized = confusion_paths(run_dir)
        confusion_matrix_png(cm, predictor.classes, counts)
        confusion_matrix_png(cm, predictor.classes, normalized, normalize=True)
    write_evaluation(run_dir, result, name)
    if json_path is not None:
        files.write_json(json_path, result)
    if skipped:
        log.warning(f"skipped {len(skipped)} unusable files (listed in {result.file})")
    return result, y_true, outputs, paths


def evaluate_typed(run: Union[str, Path, Predictor], data: Union[str, Path],
                   json_path: Optional[Union[str, Path]] = None, plot: bool = True, split: str = "auto",
                   device: str = "auto", tta: bool = False) -> Evaluation:
    """Evaluate a run on DATA. On the run's own data: its held-out images (test, else val, from split.csv),
    written to evaluation.json with the confusion-matrix PNGs; on other data: its test/ split if it has
    one, else all of it, written to evaluations/<name>.json. ``device``: auto (a GPU when there is one),
    cpu or cuda. ``tta``: test-time augmentation (the views the run trained with)."""
    return evaluate_with_outputs(run, data, json_path, plot, split, device, tta)[0]


def evaluate(run: Union[str, Path, Predictor], data: Union[str, Path], json_path: Optional[Union[str, Path]] = None,
             plot: bool = True, split: str = "auto", device: str = "auto", tta: bool = False) -> dict:
    """``evaluate_typed`` (see there), returned as the document it writes: ``cnnlab.evaluate``'s dict."""
    return evaluate_typed(run, data, json_path, plot, split, device, tta).to_json()
