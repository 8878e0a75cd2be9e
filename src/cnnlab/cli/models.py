"""Commands about models and the config: models, summary, config."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cnnlab.cli.app import app
from cnnlab.cli.console import new_table, out


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
        overrides = {"weights": "none"}  # counting parameters needs no weights: no download, offline too
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
        from cnnlab.data.augment_batches import describe

        info = run.training_info()
        out.print(f"augmentation: {describe(run.config.augment)}   strategy: {info.get('strategy', '?')}   "
                  f"weights: {run.config.model.weights or 'none'}")


@app.command("config")
def show_config() -> None:
    """Print the default config as YAML, each key with its meaning and allowed values: every key can go in a
    --config file or be given as a flag."""
    from cnnlab.flags import commented_yaml

    out.print(commented_yaml(), markup=False, highlight=False, soft_wrap=True)
