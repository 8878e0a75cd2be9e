"""Commands that read a trained run: evaluate, predict, report."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from cnnlab.cli.app import app
from cnnlab.cli.console import console, new_table, out
from cnnlab.errors import CnnlabError
from cnnlab.inference.prediction import TOP_K


# ----------------------------------------------------------------------------- evaluate / predict
def print_metrics(result) -> None:
    """An Evaluation as tables: per class and averaged, then accuracy, calibration and the confusion matrix."""
    if not result.is_classification:
        r2 = "nan" if result.r2 is None else f"{result.r2:.4f}"
        out.print(f"n={result.n}  MAE {result.mae:.4f}  RMSE {result.rmse:.4f}  R² {r2}")
        return
    what = {"test": "held-out test ", "val": "validation ", "all": "all "}.get(result.split, "")
    table = new_table("class", "precision", "recall", "f1", "support",
                      title=f"evaluation on {result.n} {what}images")

    def cell(v):
        return "n/a" if v is None else f"{v:.4f}"

    for name, row in result.per_class.items():
        table.add_row(name, cell(row.precision), cell(row.recall), cell(row.f1), str(row.support))
    table.add_section()
    for avg in ("macro", "weighted", "micro"):
        table.add_row(f"{avg} avg", *(f"{v:.4f}" for v in result.averages(avg)), str(result.n))
    out.print(table)
    tops = "  ".join(f"top-{k} {v:.4f}" for k, v in (result.top_k_accuracy or {}).items())
    out.print(f"accuracy {result.accuracy:.4f}  balanced accuracy {result.balanced_accuracy:.4f}  {tops}")
    if result.calibration is not None:
        out.print(_calibration_line(result.calibration), soft_wrap=True)
    if result.tta:
        out.print(f"test-time augmentation: the mean over {', '.join(result.tta)}")
    cm = new_table("true \\ pred", *result.classes, title="confusion matrix")
    for name, row in zip(result.classes, result.confusion_matrix):
        cm.add_row(name, *(str(v) for v in row))
    out.print(cm)
    if result.split_note:
        out.print(f"[yellow]note:[/] these figures are {escape(result.split_note)}", soft_wrap=True)


def _calibration_line(cal) -> str:
    before = "" if cal.ece_before is None else f"{cal.ece_before:.4f} before, "
    ece = f"ECE ({cal.bins} bins) {before}{cal.ece_after:.4f} after"
    if cal.kept is False:
        return f"calibration: ECE ({cal.bins} bins) {cal.ece_after:.4f}, no temperature (T = 1): " \
               f"{escape(str(cal.reason))}"
    if not cal.fitted_on_these_images:
        return f"calibration: temperature {cal.temperature:.3f}, {ece}"
    oof = cal.out_of_fold
    fair = f"; out-of-fold (not fitted on): {oof.ece_before:.4f} -> {oof.ece_after:.4f}" if oof else ""
    return f"calibration: temperature {cal.temperature:.3f}, {ece} on the images that fitted it{fair}"


@app.command()
def evaluate(
    run: Path = typer.Argument(..., help="Run directory."),
    data: Path = typer.Argument(..., help="Labelled data: its test/ split if it has one, else all of it."),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Also write the metrics as JSON to FILE."),
    split: str = typer.Option("auto", help="auto: the run's own held-out images (test, else val) or another "
                                            "dataset's test/ split; test, val; all: every image."),
    device: str = typer.Option("auto", help="auto (a GPU when there is one), cpu or cuda."),
    tta: bool = typer.Option(False, "--tta", help="Test-time augmentation: average the softmax over the image and "
                                                  "the flips/shifts/zoom the run trained with."),
) -> None:
    """Accuracy, balanced accuracy, precision, recall, F1 (per class, macro, weighted, micro), top-k, confusion
    matrix, calibration (ECE before and after the run's temperature)."""
    from cnnlab import rundir
    from cnnlab.evaluation.metrics import evaluate_typed

    result = evaluate_typed(run, data, json_path=json_file, split=split, device=device, tta=tta)
    print_metrics(result)
    if result.absent_classes:
        console.print(f"no images of {', '.join(result.absent_classes)}: n/a, and left out of the macro and "
                      f"weighted averages", soft_wrap=True)
    console.print(f"metrics: {result.file}", soft_wrap=True)
    if result.confusion_matrix is not None and Path(result.file).name == rundir.EVALUATION:
        console.print(f"confusion matrix plot: {rundir.confusion_paths(Path(run))[0]}")


def _expand(paths: List[Path]) -> List[Path]:
    from cnnlab.data.images import IMAGE_EXTENSIONS

    files: List[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith("."))
        elif p.is_file():
            files.append(p)
        else:
            raise CnnlabError(f"image not found: {p}")
    if not files:
        raise CnnlabError(f"no images in {', '.join(map(str, paths))}")
    return files


@app.command()
def predict(
    run: Path = typer.Argument(..., help="Run directory."),
    images: List[Path] = typer.Argument(..., help="Image files or folders."),
    top_k: int = typer.Option(TOP_K, "--top-k", "-k", min=1, help="How many classes to show per image."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
    csv_file: Optional[Path] = typer.Option(None, "--csv", help="Write path,label,probability,uncertain,top_k rows to FILE "
                                                                "instead of printing a table (large folders)."),
    backend: str = typer.Option("torch", help="torch, or onnx (ONNX Runtime; exported on first use)."),
    device: str = typer.Option("auto", help="auto (a GPU when there is one), cpu or cuda."),
    threshold: Optional[float] = typer.Option(None, help="Mark predictions whose top probability is below this "
                                                          "(0-1) as uncertain: no label."),
    tta: bool = typer.Option(False, "--tta", help="Test-time augmentation (the views the run trained with)."),
) -> None:
    """Predict the class (and calibrated probability) of each image."""
    from cnnlab.inference.predictor import check_threshold, load

    check_threshold(threshold)
    predictor = load(run, device=device, backend=backend, tta=tta)
    files, tensors = _read_images(predictor, _expand(images))
    preds = predictor.to_predictions(predictor.outputs(tensors), files, top_k, threshold)
    if as_json:
        from cnnlab.files import dumps

        out.print(dumps([p.to_dict() for p in preds]), markup=False, highlight=False, soft_wrap=True)
    elif csv_file is not None:
        _write_predictions(csv_file, preds)
        console.print(f"{len(preds)} predictions: {csv_file}")
    else:
        _print_predictions(preds, top_k)


def _read_images(predictor, paths: List[Path]) -> tuple[list[str], list]:
    """The images the predictor can read, preprocessed; each one it cannot is said and skipped."""
    from cnnlab.errors import BadImage

    files, tensors, skipped = [], [], []
    for f in paths:
        try:
            tensors.append(predictor.preprocess(f))
            files.append(str(f))
        except BadImage as exc:
            skipped.append(f"{f}: {exc.reason}")
    if not files:
        more = f" and {len(skipped) - 1} more" if len(skipped) > 1 else ""
        raise CnnlabError(f"none of the images could be read ({skipped[0]}{more})")
    for line in skipped:
        console.print(f"[yellow]skipped[/] {escape(line)}", soft_wrap=True)
    return files, tensors


def _write_predictions(csv_file: Path, preds) -> None:
    from cnnlab.rundir import write_csv

    write_csv(csv_file, ("path", "label", "probability", "uncertain", "top_k"),
              ((p.path, "" if p.label is None else p.label, "" if p.probability is None else p.probability,
                str(bool(p.uncertain)).lower(), "; ".join(f"{t['label']} {t['probability']:.4f}" for t in p.top_k))
               for p in preds))


def _print_predictions(preds, top_k: int) -> None:
    table = new_table("image", "label", "probability", f"top {top_k}")
    for p in preds:
        prob = "" if p.probability is None else f"{p.probability:.4f}"
        top = ", ".join(f"{t['label']} {t['probability']:.3f}" for t in p.top_k)
        table.add_row(p.path, "uncertain" if p.uncertain else str(p.label), prob, top)
    out.print(table)


# ----------------------------------------------------------------------------- report
@app.command()
def report(
    run: Path = typer.Argument(..., help="Run directory."),
    data: Optional[Path] = typer.Option(None, help="Labelled test data (default: the data of the last evaluate)."),
) -> None:
    """Write RUN/report.html: run, model, curves, evaluation, mistakes with Grad-CAM, augmentation."""
    from cnnlab.evaluation.report import build_report

    console.print(f"report: {build_report(run, data)}")
