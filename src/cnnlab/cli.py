"""The ``cnnlab`` command: thin wrappers that parse flags, call the Python API and print.

Errors a person can fix are one line on stderr and exit code 2; ``--debug`` shows the traceback.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from cnnlab import rundir
from cnnlab.console import console, new_table, out
from cnnlab.errors import CnnlabError, Interrupted

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="cnnlab: from a folder of labelled images to a trained, measured and deployed CNN.")
datasets_app = typer.Typer(no_args_is_help=True, help="Built-in sample datasets.")
app.add_typer(datasets_app, name="datasets")
augment_app = typer.Typer(no_args_is_help=True, help="Data augmentation.")
diagnose_app = typer.Typer(no_args_is_help=True, help="Diagnostics: backpropagation made visible.")
app.add_typer(diagnose_app, name="diagnose")
plot_app = typer.Typer(no_args_is_help=True, help="Plots of the course's ideas.")
app.add_typer(plot_app, name="plot")
app.add_typer(augment_app, name="augment")

EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}


def _config_epilog() -> str:
    """Every config key as a flag, grouped by section, with its default, allowed values and meaning
    (from the config's field descriptions, as ``cnnlab config`` prints them)."""
    from cnnlab.config import ALIASES, SECTION_TITLES, key_docs

    alias = {path: name for name, path in ALIASES.items()}

    shown = {"path", "name", "epochs"}  # DATA, --model and --epochs are the command's own
    lines, section = ["[bold]Every config key is a flag[/] (also as --section.key, and in a --config YAML file):"], None
    for doc in key_docs():
        if doc.name in shown:
            continue
        if doc.section != section:
            section = doc.section
            lines += ["", f"[bold]{SECTION_TITLES[section]}[/]"]
        default = "" if doc.default is None else f" (default {doc.default})".replace("True", "true").replace("False", "false")
        flag = doc.name.replace("_", "-")
        other = alias.get(f"{doc.section}.{doc.name}")
        if other and other != doc.name:
            flag = f"{other} (or --{flag})"
        lines.append(f"  --{flag} {escape('[' + doc.allowed + ']')}  {doc.description}{default}")
    return "\n".join(lines)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        out.print(f"cnnlab {version('cnnlab')}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """cnnlab: from a folder of labelled images to a trained, measured and deployed CNN."""


def parse_extra(args: List[str]) -> dict:
    """``--key value`` / ``--key=value`` / ``--flag`` pairs -> {key: value}, values read as YAML."""
    from cnnlab.config import parse_value

    result, i = {}, 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise CnnlabError(f"unexpected argument '{arg}': config flags look like --key value (see: cnnlab config)")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 < len(args) and not args[i + 1].startswith("--"):
                value, i = args[i + 1], i + 1
            else:
                value = "true"
        result[key] = parse_value(value)
        i += 1
    return result


# ----------------------------------------------------------------------------- datasets
@datasets_app.command("list")
def datasets_list() -> None:
    """List the built-in sample datasets."""
    from cnnlab.data.samples import SAMPLES

    table = new_table("name", "description")
    for name, text in ((n, SAMPLES.description(n)) for n in SAMPLES.names()):
        table.add_row(name, text)
    out.print(table)


@datasets_app.command("export", context_settings=EXTRA)
def datasets_export(ctx: typer.Context, name: str, directory: Path) -> None:
    """Write a sample dataset as DIR/train/<class>/*.png and DIR/test/<class>/*.png.

    Options are passed on to the dataset, e.g. shapes: --size 32 --count 200 --classes 4 --seed 0.
    """
    from cnnlab.data.samples import export

    counts = export(name, directory, **{k.replace("-", "_"): v for k, v in parse_extra(ctx.args).items()})
    console.print(f"{name}: {counts['train']} train and {counts['test']} test images in {directory}")


# ----------------------------------------------------------------------------- augment
@augment_app.command("preview", context_settings=EXTRA)
def augment_preview(
    ctx: typer.Context,
    data: Path = typer.Argument(..., help="Dataset folder or CSV manifest."),
    out_file: Path = typer.Option(Path("augment_preview.png"), "--out", "-o", help="PNG to write."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config with an augment section."),
    images: int = typer.Option(4, min=1, help="How many images (one per class first)."),
    versions: int = typer.Option(6, min=1, help="Augmented versions of each."),
) -> None:
    """Each image followed by augmented versions, e.g. --augment standard --rotation 30 --noise 0.05."""
    from cnnlab.config import load_config
    from cnnlab.data.augment import describe
    from cnnlab.data.preview import preview
    from cnnlab.models.registry import resolve_preprocessing

    cfg = load_config(config, parse_extra(ctx.args))
    path = preview(cfg, data, out_file, lambda probed: resolve_preprocessing(cfg, probed), images, versions)
    console.print(f"augmentation: {describe(cfg.augment)}")
    console.print(f"preview: {path}")


# ----------------------------------------------------------------------------- diagnose
@diagnose_app.command("gradients")
def diagnose_gradients(
    depth: int = typer.Option(20, min=4, help="Convolution layers in each network."),
    activation: str = typer.Option("sigmoid", help="Activation of every layer."),
    steps: int = typer.Option(5, min=1, help="SGD steps the norms are averaged over."),
    out_file: Path = typer.Option(Path("gradients.png"), "--out", "-o", help="Plot to write."),
) -> None:
    """Vanishing gradients: a plain and a residual CNN of the same depth, gradient norm per layer."""
    from cnnlab.evaluation.diagnostics import plot_experiment, vanishing_gradients
    from cnnlab.layers import ACTIVATIONS

    ACTIVATIONS.get(activation)
    exp = vanishing_gradients(depth, activation, steps)
    table = new_table("layer", "plain", "residual", title=f"mean gradient norm over {steps} steps ({activation})")
    for name, a, b in zip(exp.layers, exp.plain, exp.residual):
        table.add_row(name, f"{a:.2e}", f"{b:.2e}")
    out.print(table)
    out.print(f"first/last layer: plain {exp.ratio('plain'):.1e}, residual {exp.ratio('residual'):.1e}")
    console.print(f"plot: {plot_experiment(exp, out_file)}")


# ----------------------------------------------------------------------------- report
@app.command()
def report(
    run: Path = typer.Argument(..., help="Run directory."),
    data: Optional[Path] = typer.Option(None, help="Labelled test data (default: the data of the last evaluate)."),
) -> None:
    """Write RUN/report.html: run, model, curves, evaluation, mistakes with Grad-CAM, augmentation."""
    from cnnlab.evaluation.report import build_report

    console.print(f"report: {build_report(run, data)}")


@app.command(context_settings=EXTRA)
def compare(
    ctx: typer.Context,
    data: Path = typer.Argument(..., help="Labelled data (with a test/ split, or --test-split)."),
    models: str = typer.Option(..., "--models", help="Comma-separated names, e.g. cnn-small,resnet18,vgg16."),
    epochs: Optional[int] = typer.Option(None, help="Epochs for every model."),
    budget: Optional[float] = typer.Option(None, help="Training seconds at most for every model."),
    out_dir: Path = typer.Option(Path("compare"), "--out", "-o", help="Folder for the runs and the leaderboard."),
) -> None:
    """Train each model on the same split with the same budget; write a leaderboard (md, csv, html)."""
    from cnnlab.workflows.compare import _cells, COLUMNS, compare as run_compare

    quiet_lightning()

    overrides = parse_extra(ctx.args)
    if epochs is not None:
        overrides["epochs"] = epochs
    entries = run_compare(data, [m.strip() for m in models.split(",") if m.strip()], out_dir, budget, **overrides)
    table = new_table(*COLUMNS[:-1], title="leaderboard")
    for e in entries:
        if not e.error:
            table.add_row(*_cells(e)[:-1])
    out.print(table)
    for e in entries:
        if e.error:
            out.print(f"{e.model}: failed: {escape(e.error)}", soft_wrap=True)
    console.print(f"leaderboard: {out_dir / 'leaderboard.html'} (also .md, .csv)")


# ----------------------------------------------------------------------------- plot
@plot_app.command("activations")
def plot_activations(out_file: Path = typer.Option(Path("activations.png"), "--out", "-o")) -> None:
    """Each activation function of the registry and its derivative."""
    from cnnlab.evaluation.plots import activations_png

    console.print(f"plot: {activations_png(out_file)}")


@plot_app.command("features")
def plot_features(
    run: Path = typer.Argument(..., help="Run directory."),
    image: Path = typer.Argument(..., help="An image."),
    layer: Optional[str] = typer.Option(None, help="A convolution or pooling layer (default: the first conv and pools)."),
    out_dir: Path = typer.Option(Path("features"), "--out", "-o", help="Folder for the PNGs."),
) -> None:
    """First-layer filters, and the feature maps of chosen layers for one image, before and after pooling."""
    from cnnlab.evaluation.features import plot_features as run_plot
    from cnnlab.inference.predictor import load

    if not image.is_file():
        raise CnnlabError(f"image not found: {image}")
    paths = run_plot(load(run, "cpu"), image, out_dir, layer)  # an unreadable image: BadImage, naming it
    for p in paths:
        console.print(f"plot: {p}")


# ----------------------------------------------------------------------------- train
@app.command(context_settings=EXTRA, epilog=_config_epilog())
def train(
    ctx: typer.Context,
    data: Optional[Path] = typer.Argument(None, help="Folder of class sub-folders (optionally train/ val/ test/) or a CSV manifest."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model name (see: cnnlab models); default cnn-small."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory to write; default runs/<model>-<time>."),
    epochs: Optional[int] = typer.Option(None, help="Passes over the training set; default 10."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config file."),
    resume: bool = typer.Option(False, help="Continue the interrupted run in --out to the same end."),
    overwrite: bool = typer.Option(False, help="Replace an existing run in --out."),
) -> None:
    """Train a model. Every config key is also a flag: --lr 0.01, --optim.schedule cosine, --dense 256,128 ..."""
    from cnnlab.training.fit import train as run_train

    quiet_lightning()

    args = list(ctx.args)
    if data is not None and str(data).startswith("--"):  # no DATA (--resume): click took the first flag for it
        args, data = [str(data), *args], None
    overrides = parse_extra(args)
    if model is not None:
        overrides["model"] = model
    if epochs is not None:
        overrides["epochs"] = epochs
    if data is None and not resume:
        raise CnnlabError("missing DATA: cnnlab train DATA --out RUN (or --resume --out RUN)")
    result = run_train(data, out_dir, config=config, resume=resume, overwrite=overwrite, **overrides)
    from cnnlab.training.distributed import is_leader

    if is_leader():  # the other processes of a multi-process run have nothing of their own to say
        _print_training(result)


def _print_training(result) -> None:
    m = result.metrics
    parts = [f"{k} {m[k]:.4f}" for k in ("train_loss", "train_acc", "val_loss", "val_acc", "val_mae") if k in m]
    console.print(f"trained {result.epochs} epochs in {result.seconds:.1f}s; last epoch: {', '.join(parts)}",
                  soft_wrap=True)
    if result.best_epoch is not None:
        console.print(f"model.safetensors holds the best epoch, {result.best_epoch} (counting from 0, as metrics.csv)")
    console.print(f"run directory: [bold]{escape(str(result.run_dir))}[/]", soft_wrap=True)


# ----------------------------------------------------------------------------- evaluate / predict
def print_metrics(result: dict) -> None:
    if "classes" not in result:
        out.print(f"n={result['n']}  MAE {result['mae']:.4f}  RMSE {result['rmse']:.4f}  R² {result['r2']:.4f}")
        return
    what = {"test": "held-out test ", "val": "held-out validation ", "all": "all "}.get(result.get("split"), "")
    table = new_table("class", "precision", "recall", "f1", "support",
                      title=f"evaluation on {result['n']} {what}images")

    def cell(v):
        return "n/a" if v is None else f"{v:.4f}"

    for name, row in result["per_class"].items():
        table.add_row(name, cell(row["precision"]), cell(row["recall"]), cell(row["f1"]), str(row["support"]))
    table.add_section()
    for avg in ("macro", "weighted", "micro"):
        table.add_row(f"{avg} avg", f"{result[f'precision_{avg}']:.4f}", f"{result[f'recall_{avg}']:.4f}",
                      f"{result[f'f1_{avg}']:.4f}", str(result["n"]))
    out.print(table)
    tops = "  ".join(f"top-{k} {v:.4f}" for k, v in result.get("top_k_accuracy", {}).items())
    out.print(f"accuracy {result['accuracy']:.4f}  {tops}")
    cm = new_table("true \\ pred", *result["classes"], title="confusion matrix")
    for name, row in zip(result["classes"], result["confusion_matrix"]):
        cm.add_row(name, *(str(v) for v in row))
    out.print(cm)


@app.command()
def evaluate(
    run: Path = typer.Argument(..., help="Run directory."),
    data: Path = typer.Argument(..., help="Labelled data: its test/ split if it has one, else all of it."),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Also write the metrics as JSON to FILE."),
    split: str = typer.Option("auto", help="auto: the run's own held-out images (test, else val) or another "
                                            "dataset's test/ split; test, val; all: every image."),
    device: str = typer.Option("auto", help="auto (a GPU when there is one), cpu or cuda."),
) -> None:
    """Accuracy, precision, recall, F1 (per class, macro, weighted, micro), top-k, confusion matrix."""
    from cnnlab.evaluation.metrics import evaluate as run_evaluate

    result = run_evaluate(run, data, json_path=json_file, split=split, device=device)
    print_metrics(result)
    if result.get("absent_classes"):
        console.print(f"no images of {', '.join(result['absent_classes'])}: n/a, and left out of the macro and "
                      f"weighted averages", soft_wrap=True)
    console.print(f"metrics: {result['file']}", soft_wrap=True)
    if "confusion_matrix" in result and Path(result["file"]).name == rundir.EVALUATION:
        console.print(f"confusion matrix plot: {Path(run) / rundir.CONFUSION}")


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
    top_k: int = typer.Option(3, "--top-k", "-k", min=1, help="How many classes to show per image."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
    csv_file: Optional[Path] = typer.Option(None, "--csv", help="Write path,label,probability,top_k rows to FILE "
                                                                "instead of printing a table (large folders)."),
    backend: str = typer.Option("torch", help="torch, or onnx (ONNX Runtime; exported on first use)."),
    device: str = typer.Option("auto", help="auto (a GPU when there is one), cpu or cuda."),
) -> None:
    """Predict the class (and probability) of each image."""
    from cnnlab.errors import BadImage
    from cnnlab.inference.predictor import load

    predictor = load(run, device=device, backend=backend)
    files, tensors, skipped = [], [], []
    for f in _expand(images):
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
    preds = predictor.to_predictions(predictor.outputs(tensors), files, top_k)
    if as_json:
        from cnnlab.files import dumps

        out.print(dumps([p.to_dict() for p in preds]), markup=False, highlight=False, soft_wrap=True)
        return
    if csv_file is not None:
        from cnnlab.rundir import write_csv

        write_csv(csv_file, ("path", "label", "probability", "top_k"),
                  ((p.path, p.label, "" if p.probability is None else p.probability,
                    "; ".join(f"{t['label']} {t['probability']:.4f}" for t in p.top_k)) for p in preds))
        console.print(f"{len(preds)} predictions: {csv_file}")
        return
    table = new_table("image", "label", "probability", f"top {top_k}")
    for p in preds:
        prob = "" if p.probability is None else f"{p.probability:.4f}"
        top = ", ".join(f"{t['label']} {t['probability']:.3f}" for t in p.top_k)
        table.add_row(p.path, str(p.label), prob, top)
    out.print(table)


# ----------------------------------------------------------------------------- export / serve
@app.command("export")
def export_cmd(
    run: Path = typer.Argument(..., help="Run directory."),
    fmt: str = typer.Option("onnx", "--format", "-f", help="onnx or torchscript."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder to write (default: RUN/export)."),
) -> None:
    """Export the model with its preprocessing, checked against PyTorch (max abs diff <= 1e-4)."""
    from cnnlab.inference.extras import require_serve

    require_serve("cnnlab export")
    from cnnlab.inference.export import export

    result = export(run, fmt, out_dir)
    console.print(f"{result.format}: {result.path} (parity with PyTorch: max abs diff {result.max_abs_diff:.2e})")


@app.command()
def serve(
    run: Path = typer.Argument(..., help="Run directory."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (default: this machine only)."),
    port: int = typer.Option(8000, help="Port."),
    backend: str = typer.Option("torch", help="torch or onnx."),
    max_upload_mb: float = typer.Option(10.0, help="Largest accepted upload, in MB."),
    device: str = typer.Option("auto", help="auto (a GPU when there is one), cpu or cuda."),
) -> None:
    """A web page (GET /) and a REST API (POST /predict, GET /health, GET /model, /docs)."""
    from cnnlab.inference.extras import require_serve

    require_serve("cnnlab serve")
    from cnnlab.inference.server import serve as run_server

    console.print(f"serving {run} on http://{host}:{port}/  (API docs: http://{host}:{port}/docs)")
    from cnnlab.inference.predictor import resolve_device

    resolve_device(device)  # a wrong device is one line before uvicorn starts
    run_server(str(run), host, port, backend, max_upload_mb, device)


# ----------------------------------------------------------------------------- models / summary / config
@app.command()
def models() -> None:
    """List the models cnnlab can build."""
    from cnnlab.models.registry import MODELS

    table = new_table("name", "description", "default input")
    for name in MODELS.names():
        e = MODELS.get(name)
        table.add_row(name, e.description, f"{e.default_channels}x{e.size}x{e.size}")
    out.print(table)


@app.command()
def summary(
    model: str = typer.Argument(..., help="A model name, or a run directory."),
    input_size: Optional[int] = typer.Option(None, "--input-size", help="Image side in pixels."),
    channels: Optional[int] = typer.Option(None, help="Input channels (1 or 3)."),
    classes: Optional[int] = typer.Option(None, help="Output classes (default: 1000 for backbones, 10 for CNNs)."),
    head: Optional[str] = typer.Option(None, help="Head: flatten, gap or original (default for backbones: original)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config declaring the model."),
) -> None:
    """Each layer's output shape and parameter count, and the totals (like Keras' model.summary())."""
    from cnnlab.config import load_config
    from cnnlab.models.registry import create_model, get_entry
    from cnnlab.models.summary import summarize

    if Path(model).is_dir():
        from cnnlab.rundir import Run

        run = Run.open(model)
        net, pre = run.load_model(), run.pre
    else:
        overrides = {}
        if input_size:
            overrides["input_size"] = input_size
        if channels:
            overrides["in_channels"] = channels
        pretrained = get_entry(model).pretrained
        if head or pretrained:  # a backbone's own classifier: parameter counts as in the reference
            overrides["head"] = head or "original"
        net = create_model(model, classes or (1000 if pretrained else 10), load_config(config), **overrides)
        pre = net.pre
    s = summarize(net, (pre.channels, *pre.size))
    table = new_table("layer", "type", "output shape", "params", title=f"{model}: input {pre.channels}x{pre.size[0]}x{pre.size[1]}")
    for row in s.rows:
        table.add_row(row.name, row.kind, str(list(row.output_shape)), f"{row.params:,}")
    out.print(table)
    out.print(f"total params: {s.total:,}   trainable: {s.trainable:,}   non-trainable: {s.frozen:,}")
    if Path(model).is_dir():
        from cnnlab.data.augment import describe

        info = run.training_info()
        out.print(f"augmentation: {describe(run.config.augment)}   strategy: {info.get('strategy', '?')}   "
                  f"weights: {run.config.model.weights or 'none'}")


@app.command("config")
def show_config() -> None:
    """Print the default config as YAML, each key with its meaning and allowed values: every key can go in a
    --config file or be given as a flag."""
    from cnnlab.config import commented_yaml

    out.print(commented_yaml(), markup=False, highlight=False, soft_wrap=True)


# ----------------------------------------------------------------------------- demo
@app.command()
def demo(
    directory: Path = typer.Option(Path("demo"), "--dir", help="Where the data and the run go."),
    epochs: Optional[int] = typer.Option(None, help="Training epochs (default: the demo's 15)."),
) -> None:
    """Export mnist-5k, train the default CNN, evaluate on the 1,000 test digits, print the metrics."""
    from cnnlab.workflows import demo as demo_

    quiet_lightning()

    data, result, metrics = demo_.run(directory, **({"epochs": epochs} if epochs else {}))
    _print_training(result)
    print_metrics(metrics)
    console.print(f"confusion matrix plot: {result.run_dir / rundir.CONFUSION}")
    console.print(f"next: {_command()} predict {result.run_dir} {data / 'test' / '7'} --top-k 3", soft_wrap=True)


def _command() -> str:
    """How to call cnnlab from this shell: ``cnnlab`` when it is on the PATH, else its path in the venv."""
    import shutil

    mine = Path(sys.executable).parent / "cnnlab"
    found = shutil.which("cnnlab")
    if found and Path(found).resolve() == mine.resolve():
        return "cnnlab"
    try:
        return str(mine.relative_to(Path.cwd()))
    except ValueError:
        return str(mine)


class ConsoleHandler(logging.Handler):
    """Log records as a person's lines on stderr: warnings marked in yellow, no markup read from messages.

    Without --debug only cnnlab's own records pass; the libraries' info lines and warnings stay out.
    """

    def __init__(self, debug: bool) -> None:
        super().__init__(logging.DEBUG if debug else logging.INFO)
        if not debug:
            self.addFilter(lambda record: record.name == "cnnlab" or record.name.startswith("cnnlab."))

    def emit(self, record: logging.LogRecord) -> None:
        from rich.text import Text

        line = Text(record.getMessage())
        if record.levelno >= logging.WARNING:
            line = Text.assemble(("warning: " if record.levelno == logging.WARNING else "error: ", "yellow"), line)
        console.print(line, soft_wrap=True)


def quiet_lightning() -> None:
    """Lightning gives its "lightning" logger a stderr handler of its own when it is imported: without --debug
    it keeps to warnings, like every other library here (call after importing the training code)."""
    if not DEBUG:
        for handler in logging.getLogger("lightning").handlers:
            handler.setLevel(logging.WARNING)


DEBUG = False


def setup_output(debug: bool) -> None:
    """What the CLI shows: cnnlab's log lines through rich, and (without --debug) no library warnings. A root
    handler also keeps Lightning from adding its own when it is imported later."""
    import warnings

    global DEBUG
    DEBUG = debug
    logging.getLogger("cnnlab").setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(ConsoleHandler(debug))
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    if not debug:
        warnings.filterwarnings("ignore")
        os.environ.setdefault("PYTHONWARNINGS", "ignore")  # loader workers and other child processes too


def main() -> None:
    debug = "--debug" in sys.argv
    if debug:
        sys.argv.remove("--debug")
    setup_output(debug)
    try:
        app()
    except Interrupted as exc:
        console.print(f"[yellow]{escape(str(exc))}[/]", soft_wrap=True)
        sys.exit(130)
    except CnnlabError as exc:
        if debug:
            raise
        console.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)
