"""Commands that train: train, compare, demo."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from cnnlab.cli.app import EXTRA, _command, _config_epilog, app, parse_extra
from cnnlab.cli.output import quiet_lightning
from cnnlab.cli.console import console, new_table, out
from cnnlab.catalog.names import Metric
from cnnlab.errors import CnnlabError


# ----------------------------------------------------------------------------- train
@app.command(context_settings=EXTRA, epilog=_config_epilog())
def train(
    ctx: typer.Context,
    data: Optional[Path] = typer.Argument(None, help="Folder of class sub-folders (optionally train/ val/ test/) or a CSV manifest."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model name (see: cnnlab models); default cnn-small."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory to write; default runs/<model>-<time>."),
    epochs: Optional[int] = typer.Option(None, help="Passes over the training set; default: about 900 steps "
                                                     "(5-30 epochs, chosen for the data size)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config file."),
    resume: bool = typer.Option(False, help="Continue the interrupted run in --out to the same end."),
    overwrite: bool = typer.Option(False, help="Replace an existing run in --out."),
) -> None:
    """Train a model. Every config key is also a flag: --lr 0.01, --optim.schedule cosine, --dense 256,128 ..."""
    from cnnlab.config import load_config

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
    if not resume:  # a wrong flag or config file is answered before torch is imported (seconds on a small CPU)
        load_config(config, overrides)
    quiet_lightning()
    from cnnlab.training.fit import train as run_train

    result = run_train(data, out_dir, config=config, resume=resume, overwrite=overwrite, **overrides)
    from cnnlab.training.distributed import is_leader

    if is_leader():  # the other processes of a multi-process run have nothing of their own to say
        _print_training(result)


@app.command("lr-find", context_settings=EXTRA, epilog=_config_epilog())
def lr_find(
    ctx: typer.Context,
    data: Path = typer.Argument(..., help="Folder of class sub-folders (optionally train/ val/ test/) or a CSV manifest."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model name (see: cnnlab models); default cnn-small."),
    out_png: Path = typer.Option(Path("lr_find.png"), "--out", "-o", help="The plot to write (PNG)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML config file."),
) -> None:
    """Learning-rate range test (Lightning's LR finder): loss against learning rate as a PNG, and the suggestion.
    Takes the same flags as train; --lr auto in train runs it first and keeps its choice."""
    from cnnlab.training.fit import find_learning_rate

    quiet_lightning()
    overrides = parse_extra(list(ctx.args))
    if model is not None:
        overrides["model"] = model
    lr, png = find_learning_rate(data, out_png, config=config, **overrides)
    out.print(f"suggested learning rate: {lr:.3g}")
    console.print(f"plot: {escape(str(png))}", soft_wrap=True)
    console.print(f"next: {_command()} train {escape(str(data))} --lr {lr:.3g}", soft_wrap=True)


def _print_training(result) -> None:
    m = result.metrics
    shown = (Metric.TRAIN_LOSS, Metric.TRAIN_ACC, Metric.VAL_LOSS, Metric.VAL_ACC, Metric.VAL_MAE)
    parts = [f"{k.value} {m[k.value]:.4f}" for k in shown if k.value in m]
    console.print(f"trained {result.epochs} epochs in {result.seconds:.1f}s; last epoch: {', '.join(parts)}",
                  soft_wrap=True)
    if result.best_epoch is not None:
        console.print(f"model.safetensors holds the best epoch: epoch {result.best_epoch + 1} of {result.epochs} "
                      f"(epoch {result.best_epoch} in metrics.csv, which counts from 0)")
    console.print(f"run directory: [bold]{escape(str(result.run_dir))}[/]", soft_wrap=True)


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
    from cnnlab.rundir import leaderboard_paths
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
    console.print(f"leaderboard: {leaderboard_paths(out_dir)[2]} (also .md, .csv)")


# ----------------------------------------------------------------------------- demo
@app.command()
def demo(
    directory: Path = typer.Option(Path("demo"), "--dir", help="Where the data and the run go."),
    epochs: Optional[int] = typer.Option(None, help="Training epochs (default: chosen for the data size, as train's)."),
) -> None:
    """Export mnist-5k, train the default CNN, evaluate on the 1,000 test digits, print the metrics."""
    from cnnlab.cli.results import print_metrics
    from cnnlab import rundir
    from cnnlab.workflows import demo as demo_

    quiet_lightning()

    data, result, metrics = demo_.run(directory, **({"epochs": epochs} if epochs else {}))
    _print_training(result)
    print_metrics(metrics)
    console.print(f"confusion matrix plot: {rundir.confusion_paths(result.run_dir)[0]}")
    console.print(f"next: {_command()} predict {result.run_dir} {data / 'test' / '7'} --top-k 3", soft_wrap=True)
