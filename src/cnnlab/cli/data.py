"""Commands about data and the course's ideas: sample datasets, augmentation previews, the vanishing-gradient
experiment, activation and feature-map plots."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cnnlab.cli.app import EXTRA, augment_app, datasets_app, diagnose_app, parse_extra, plot_app
from cnnlab.cli.console import console, new_table, out
from cnnlab.errors import CnnlabError
from cnnlab.catalog.names import Task, listed, parse


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


def _health_table(report, data: Path):
    """The per-class counts (printed here) and the table of every check's findings (returned)."""
    table = new_table("check", "found", title=f"data health of {data} ({report.images} files)")
    if report.counts:
        out.print(_counts_table(report))
        ratio = report.imbalance_ratio
        table.add_row("imbalance (largest / smallest class)", f"{ratio:.1f}" if ratio else "n/a")
    rows = [("unreadable files", report.unreadable), ("exact duplicate groups", report.duplicates),
            ("near duplicate groups", report.near_duplicates), ("label conflicts", report.label_conflicts),
            ("train/held-out leaks", report.leaks)]
    for name, found in rows:
        table.add_row(name, str(len(found)))
    _add_sizes(table, report.sizes)
    return table


@datasets_app.command("check")
def datasets_check(
    data: Path = typer.Argument(..., help="Folder of class sub-folders (optionally train/ val/ test/) or a CSV manifest."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the whole report as JSON to FILE."),
    task: str = typer.Option(Task.CLASSIFICATION.value, help=f"{listed(Task, ' or ')} (a CSV of numeric targets)."),
    near: bool = typer.Option(True, help="Also look for near duplicates (a perceptual hash of each image)."),
) -> None:
    """Data health: counts and imbalance, unreadable files, duplicates, label conflicts, train/test leaks,
    image sizes and modes. It reports every problem and never stops at one."""
    from cnnlab import files
    from cnnlab.data.health import check

    report = check(data, parse(Task, task, "task"), near=near)
    out.print(_health_table(report, data))
    _print_examples(report)
    if json_path is not None:
        files.write_json(json_path, report)
        console.print(f"report: {json_path}")


def _counts_table(report):
    splits = sorted({s for per in report.counts.values() for s in per})
    counts = new_table("class", *splits, "total", title="images per class and split")
    for label, per in report.counts.items():
        counts.add_row(label, *(str(per.get(s, 0)) for s in splits), str(sum(per.values())))
    return counts


def _add_sizes(table, sizes) -> None:
    if sizes.smallest is None:  # no readable image
        return
    table.add_row("sizes (H x W)", f"smallest {sizes.smallest[0]}x{sizes.smallest[1]}, largest "
                  f"{sizes.largest[0]}x{sizes.largest[1]}, {sizes.distinct} distinct")
    table.add_row("modes", ", ".join(f"{m} {n}" for m, n in sizes.modes.items()) + (" (mixed)" if sizes.mixed_modes else ""))
    table.add_row(f"aspect ratio beyond {sizes.extreme_aspect_limit:g}:1", str(len(sizes.extreme_aspect)))


def _print_examples(report) -> None:
    """The first few unreadable files, leaks and label conflicts, one line each."""
    for item in report.unreadable[:5]:
        console.print(f"unreadable: {item.path}: {item.reason}")
    for leak in report.leaks[:5]:
        console.print(f"leak ({leak.kind}): {leak.held_out} = {leak.train}")
    for conflict in report.label_conflicts[:5]:
        console.print(f"label conflict ({conflict.kind}): " + ", ".join(f"{x.path} ({x.label})" for x in conflict.images))


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
    from cnnlab.data.augment_batches import describe
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
    from cnnlab.catalog.layers import ACTIVATIONS

    ACTIVATIONS.get(activation)
    exp = vanishing_gradients(depth, activation, steps)
    table = new_table("layer", "plain", "residual", title=f"mean gradient norm over {steps} steps ({activation})")
    for name, a, b in zip(exp.layers, exp.plain, exp.residual):
        table.add_row(name, f"{a:.2e}", f"{b:.2e}")
    out.print(table)
    out.print(f"first/last layer: plain {exp.ratio('plain'):.1e}, residual {exp.ratio('residual'):.1e}")
    console.print(f"plot: {plot_experiment(exp, out_file)}")


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
