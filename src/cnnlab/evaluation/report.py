"""``cnnlab report RUN [--data DATA]``: one self-contained HTML file (images embedded) about a run, read
top-down: a headline card (accuracy or R², macro F1, ECE, time, device), the training curves, the
evaluation with its reliability diagram, the most confident mistakes with Grad-CAM heatmaps, data
health, augmentation and gradient flow; the resolved config and the layer table last, folded."""
from __future__ import annotations

import base64
import html
import io
import tempfile
from collections import Counter
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from cnnlab import files
from cnnlab.artifacts import CalibrationFigures, Evaluation
from cnnlab.errors import CnnlabError
from cnnlab.evaluation import plots
from cnnlab.inference.predictor import Predictor, load
from cnnlab.rundir import REPORT, Run
from cnnlab.catalog import strategies
from cnnlab.catalog.names import Task

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.6rem}h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.25rem .6rem;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}pre{background:#f7f7f7;padding:.6rem;overflow:auto}
.grid{display:flex;flex-wrap:wrap;gap:.8rem}.card{text-align:center;font-size:.8rem}.card img{width:112px;height:112px;
image-rendering:pixelated}img.plot{max-width:100%}
#headline{display:flex;flex-wrap:wrap;gap:1.5rem;background:#f3f6fb;border:1px solid #d5deea;border-radius:8px;
padding:.8rem 1.2rem;margin:.6rem 0 1rem}#headline div{min-width:7rem}#headline b{display:block;font-size:1.6rem}
#headline span{font-size:.8rem;color:#555}details{margin:1rem 0}summary{cursor:pointer;font-weight:600}
.warn{color:#a15c00}"""


def _png_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _img(path: Path, alt: str, cls: str = "plot") -> str:
    return f'<img class="{cls}" alt="{html.escape(alt)}" src="{_png_uri(path)}">'


def _table(header: list[str], rows: list[list], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><tr>{head}</tr>{body}</table>'


def _thumb(image: torch.Tensor, heat: Optional[torch.Tensor] = None) -> str:
    """A (C, H, W) uint8 image, optionally with a Grad-CAM heatmap over it, as a PNG data URI."""
    from cnnlab.evaluation.plots import plt

    fig, ax = plt.subplots(figsize=(1.4, 1.4))
    arr = image.permute(1, 2, 0).numpy()
    ax.imshow(arr[:, :, 0] if arr.shape[2] == 1 else arr, cmap="gray" if arr.shape[2] == 1 else None)
    if heat is not None:
        ax.imshow(heat.numpy(), cmap="jet", alpha=0.45)
    ax.axis("off")
    fig.subplots_adjust(0, 0, 1, 1)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def grad_cam(predictor: Predictor, image: torch.Tensor, target: int) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017, via Captum) on the last convolution layer, at the image's size."""
    from captum.attr import LayerAttribution, LayerGradCam

    convs = [m for m in predictor.model.modules() if isinstance(m, torch.nn.Conv2d)]
    model = predictor.model.eval()
    x = image.unsqueeze(0).float().div(255).requires_grad_(True)
    attr = LayerGradCam(model, convs[-1]).attribute(x, target=target, relu_attributions=True)
    heat = LayerAttribution.interpolate(attr, tuple(image.shape[1:]))[0, 0].detach()
    return heat / heat.max() if heat.max() > 0 else heat


def _run_section(run: Run, split: list[dict]) -> tuple[str, str, list]:
    info = run.training_info()
    counts = Counter((r["split"], r["label"]) for r in split)
    splits = [s for s in ("train", "val", "test") if any(k[0] == s for k in counts)]
    rows = [[c, *[counts.get((s, c), 0) for s in splits]] for c in (run.classes or ["(targets)"])]
    skipped = run.skipped()
    parts = [
        f"<p>Model <b>{html.escape(run.config.model.name)}</b>, strategy <b>{html.escape(str(info.get('strategy', '?')))}</b>, "
        f"weights {html.escape(str(run.config.model.weights or 'none'))}; trained {info.get('epochs', '?')} epochs in "
        f"{info.get('seconds', '?')} s on {html.escape(str(info.get('device', '?')))}{_best_epoch(info)}.</p>",
    ]
    return "<h2>The run</h2>" + "".join(parts), _table(["class", *splits], rows), skipped


def _best_epoch(info: dict) -> str:
    best = info.get("best_epoch")
    return "" if best is None else f"; best epoch {best + 1} of {info.get('epochs', '?')} (counting from 1)"


def _config_section(run: Run) -> str:
    return (f"<details><summary>Resolved config (config.yaml)</summary><pre>{html.escape(run.config.to_yaml())}</pre>"
            f"</details>")


def _health_section(run: Run, split: list[dict], dataset_table: str, skipped: list) -> str:
    found = run.data_health()
    parts = ["<h2>Data health</h2>", dataset_table]
    ratio = _imbalance(run, split)
    if ratio is not None:
        parts.append(f"<p>Imbalance (largest class / smallest): {ratio:.1f}"
                     + (" <span class='warn'>(consider --class-weights auto or --sampler balanced)</span>"
                        if ratio >= 3 else "") + "</p>")
    parts.append(f"<p>{len(skipped)} files skipped (unreadable).</p>"
                 + (_table(["file", "reason"], [[r["path"], r["reason"]] for r in skipped[:50]]) if skipped else ""))
    if found is not None:
        leaks, conflicts, dups = found.leaks, found.label_conflicts, found.duplicates
        parts.append(f"<p>Exact duplicates found by training's check: {len(dups)} groups within a class, "
                     f"<span class='{'warn' if conflicts else ''}'>{len(conflicts)} label conflicts</span>, "
                     f"<span class='{'warn' if leaks else ''}'>{len(leaks)} held-out images that are copies of "
                     f"training images</span>. <code>cnnlab datasets check DATA</code> also finds near duplicates.</p>")
        if leaks:
            parts.append(_table(["training image", "held-out copy"],
                                [[x.train, x.held_out] for x in leaks[:20]]))
    return "".join(parts)


def _imbalance(run: Run, split: list[dict]) -> Optional[float]:
    counts = Counter(r["label"] for r in split if r["split"] == "train")
    return max(counts.values()) / min(counts.values()) if run.classes and counts and min(counts.values()) else None


def _headline_cells(result: Optional[Evaluation]) -> list[tuple[str, str, str]]:
    """The headline's figures: (name, value, key) of each card."""
    if result is not None and result.accuracy is not None:
        cells = [("accuracy", f"{result.accuracy:.4f}", "accuracy"), ("macro F1", f"{result.f1_macro:.4f}", "f1"),
                 ("balanced accuracy", f"{result.balanced_accuracy:.4f}", "balanced")]
        ece = _headline_ece(result.calibration) if result.calibration is not None else None
        return cells + ([ece] if ece is not None else [])
    if result is not None and result.mae is not None:
        return [("R²", _figure(result.r2), "r2"), ("MAE", f"{result.mae:.4f}", "mae")]
    return [("not evaluated", "—", "none")]


def _headline(run: Run, result: Optional[Evaluation]) -> str:
    info = run.training_info()
    cells = _headline_cells(result)
    cells += [("training time", f"{info.get('seconds', '?')} s", "time"), ("device", str(info.get("device", "?")), "device")]
    what = f" on {result.n} {html.escape(str(result.split or ''))} images" if result else ""
    note = result.split_note if result else None
    return ('<section id="headline" aria-label="headline">'
            + "".join(f'<div id="h-{key}"><span>{html.escape(name)}</span><b>{html.escape(value)}</b></div>'
                      for name, value, key in cells)
            + f'<div><span>model</span><b style="font-size:1.1rem">{html.escape(run.config.model.name)}</b>'
              f'<span>{html.escape(what)}</span></div></section>'
            + (f'<p id="split-note" class="warn">The headline is {html.escape(note)}.</p>' if note else ""))


def _headline_ece(cal: CalibrationFigures) -> Optional[tuple[str, str, str]]:
    """The ECE measured on images that did not fit the temperature: the out-of-fold one when these fitted it."""
    if cal.fitted_on_these_images and cal.out_of_fold:
        return "ECE (calibrated, out-of-fold)", f"{cal.out_of_fold.ece_after:.4f}", "ece"
    if cal.fitted_on_these_images or cal.ece_after is None:
        return None  # a run calibrated before cross-validation, scored on the images that fitted it
    return ("ECE (calibrated)" if cal.kept else "ECE"), f"{cal.ece_after:.4f}", "ece"


def _model_section(predictor: Predictor) -> str:
    from cnnlab.models.summary import summarize

    pre = predictor.pre
    s = summarize(predictor.model, (pre.channels, *pre.size))
    rows = [[r.name, r.kind, str(list(r.output_shape)), f"{r.params:,}"] for r in s.rows]
    chosen = strategies.recorded(predictor.run.training_info().get("strategy"))
    strategy, trained = chosen.name, chosen.describe_training(predictor.run.config.transfer.unfreeze)
    return (f"<details><summary>The model: {s.total:,} parameters, layer by layer</summary>"
            f"<p>Input {pre.channels}x{pre.size[0]}x{pre.size[1]}, mean {pre.mean}, std {pre.std}. "
            f"Total parameters {s.total:,}; trained: {trained} (strategy {strategy}).</p>"
            + _table(["layer", "type", "output shape", "params"], rows, "summary") + "</details>")


def _curves_section(run: Run, tmp: Path) -> str:
    rows = run.metrics()
    if not rows:
        raise CnnlabError(f"{run.path} has no metrics yet (metrics.csv is missing or empty): train it first")
    phase_epoch = run.config.head_epochs() if strategies.recorded(run.training_info().get("strategy")).top_blocks_later \
        else None
    path = plots.training_curves_png(rows, tmp / "curves.png", phase_epoch)
    return "<h2>Training</h2>" + _img(path, "training curves: loss, accuracy and learning rate per epoch")


def _figure(value: Optional[float]) -> str:
    """A metric to 4 places; "n/a" for a class with no held-out image (it has no recall)."""
    return "n/a" if value is None else f"{value:.4f}"


def _evaluation_section(predictor: Predictor, data, tmp: Path, evaluated) -> str:
    result, y_true, outputs, paths = evaluated
    if predictor.task != Task.CLASSIFICATION:
        return (f"<h2>Evaluation</h2><p>{result.n} images: MAE {result.mae:.4f}, RMSE {result.rmse:.4f}, "
                f"R² {_figure(result.r2)}</p>")
    rows = [[c, _figure(v.precision), _figure(v.recall), _figure(v.f1), v.support] for c, v in result.per_class.items()]
    rows += [[f"{a} avg", *map(_figure, result.averages(a)), result.n] for a in ("macro", "weighted")]
    cm = np.asarray(result.confusion_matrix)
    counts = plots.confusion_matrix_png(cm, predictor.classes, tmp / "cm.png")
    normed = plots.confusion_matrix_png(cm, predictor.classes, tmp / "cmn.png", normalize=True)
    section = (f"<h2>Evaluation</h2><p>On {html.escape(str(data))}: accuracy <b id='accuracy'>{result.accuracy:.4f}</b> "
               f"over {result.n} images.</p>" + _table(["class", "precision", "recall", "f1", "support"], rows, "metrics")
               + '<div class="grid">' + _img(counts, "confusion matrix (counts)") + _img(normed, "confusion matrix (row-normalised)")
               + "</div>")
    return section + _calibration_section(result, y_true, outputs, tmp) + _mistakes_section(predictor, y_true, outputs, paths)


def _calibration_section(result: Evaluation, y_true, outputs: torch.Tensor, tmp: Path) -> str:
    from cnnlab.calibration import reliability, uncalibrated

    cal = result.calibration
    if cal is None:
        return ""
    before = None if cal.ece_before is None else reliability(uncalibrated(outputs, cal.temperature), y_true)
    path = plots.reliability_png(before, cal.reliability, tmp / "reliability.png", cal.ece_before, cal.ece_after,
                                 cal.temperature)
    scaled = cal.kept is not False and cal.ece_before is not None and cal.temperature != 1.0
    figures = f"{cal.ece_before:.4f} before, {cal.ece_after:.4f} after" if scaled else f"{cal.ece_after:.4f}"
    text = (f"<p>{html.escape(_calibration_words(cal))} Expected calibration error ({cal.bins} bins) on these "
            f"images: {figures}. A well-calibrated model's bars follow the diagonal: of the images it gives 0.9, "
            f"nine in ten are right.</p>")
    return "<h3>Calibration</h3>" + text + _img(path, "reliability diagram")


def _calibration_words(cal: CalibrationFigures) -> str:
    """What the temperature is, where it came from, and which ECE was measured on images it was not fitted on."""
    if cal.kept is False:
        return f"No temperature: {cal.reason}; the probabilities are as trained (T = 1)."
    if cal.kept is None:
        return "Not calibrated (--calibrate false, or no validation images): the probabilities are as trained."
    oof = cal.out_of_fold
    how = "cross-validated on" if oof else "fitted on"
    text = f"Temperature scaling (Guo et al. 2017), {how} the validation split: T = {cal.temperature:.3f}."
    if cal.fitted_on_these_images:
        text += (" These are the validation images that fitted it, so their figures after are optimistic"
                 + (f"; on the folds that did not fit it, ECE {oof.ece_before:.4f} -> {oof.ece_after:.4f}."
                    if oof else "."))
    return text


def _mistakes_section(predictor: Predictor, y_true, outputs: torch.Tensor, paths: list, n: int = 8, right_n: int = 3) -> str:
    probs, pred = outputs.max(dim=1)
    y = torch.as_tensor(y_true, dtype=torch.long)
    wrong = torch.nonzero(pred != y).flatten()
    wrong = wrong[probs[wrong].argsort(descending=True)][:n]
    right = torch.nonzero(pred == y).flatten()
    right = right[probs[right].argsort(descending=True)][:right_n]
    cards = []
    for i in wrong.tolist() + right.tolist():  # every card with its heatmap
        image = predictor.preprocess(paths[i])
        heat = grad_cam(predictor, image, int(pred[i]))
        ok = "right" if pred[i] == y[i] else "wrong"
        cards.append(f'<div class="card"><img alt="{ok}: {html.escape(Path(paths[i]).name)}" src="{_thumb(image, heat)}"><br>'
                     f"true {html.escape(predictor.classes[int(y[i])])}<br>pred {html.escape(predictor.classes[int(pred[i])])} "
                     f"({float(probs[i]):.2f})<br>{ok} + Grad-CAM</div>")
    title = (f"<h2>Most confident mistakes</h2><p>{len(torch.nonzero(pred != y))} of {len(y)} test images are wrong. "
             f"The {len(wrong)} most confident mistakes, then {len(right)} confident right answers; Grad-CAM heatmaps "
             f"show where the last convolution layer looked for the predicted class.</p>")
    return title + '<div class="grid">' + "".join(cards) + "</div>"


def _augment_section(run: Run, data, tmp: Path) -> str:
    from cnnlab.data.augment_batches import describe

    text = describe(run.config.augment)
    source = data or run.config.data.path
    if text == "none" or not source or not Path(source).exists():
        return f"<h2>Augmentation</h2><p>{html.escape(text)}</p>"
    from cnnlab.data.preview import preview

    path = preview(run.config, source, tmp / "aug.png", lambda probed: run.pre, images=3, versions=5)
    return f"<h2>Augmentation</h2><p>{html.escape(text)}</p>" + _img(path, "augmentation preview")


def _gradients_section(run: Run, tmp: Path) -> str:
    rows = run.gradients()
    if not rows:
        return ""
    return "<h2>Gradient flow</h2>" + _img(plots.gradient_flow_png(rows, tmp / "grad.png"), "gradient norms per layer")


def build_report(run_dir: Union[str, Path], data: Optional[Union[str, Path]] = None) -> Path:
    from cnnlab.evaluation.metrics import evaluate_with_outputs

    predictor = load(run_dir, "cpu")  # Grad-CAM and the layer table run on the CPU
    run = predictor.run
    if data is None:
        data = run.evaluation().data
    evaluated = evaluate_with_outputs(predictor, data) if data else None
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        split = run.split()  # split.csv, read once for the dataset table and the imbalance
        run_text, dataset_table, skipped = _run_section(run, split)
        body = [f"<h1>cnnlab report: {html.escape(run.path.name)}</h1>", _headline(run, evaluated and evaluated[0]),
                run_text, _curves_section(run, tmp)]
        body.append(_evaluation_section(predictor, data, tmp, evaluated) if evaluated else
                    "<h2>Evaluation</h2><p>No test data given: run <code>cnnlab report RUN --data DATA</code>.</p>")
        body += [_health_section(run, split, dataset_table, skipped), _augment_section(run, data, tmp),
                 _gradients_section(run, tmp), "<h2>Details</h2>", _config_section(run), _model_section(predictor)]
    out = run.path / REPORT
    files.write_text(out, f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>cnnlab report</title>'
                   f'<link rel="icon" href="data:,"><style>{STYLE}</style></head><body>{"".join(body)}</body></html>')
    return out
