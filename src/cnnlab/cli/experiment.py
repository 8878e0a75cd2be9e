"""``cnnlab experiment list`` and ``cnnlab experiment run NAME|FILE.yaml``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from cnnlab.cli.app import app
from cnnlab.cli.output import quiet_lightning
from cnnlab.cli.console import console, new_table, out

experiment_app = typer.Typer(no_args_is_help=True, help="Experiments that answer a CNN course's questions with "
                                                        "measured evidence (paired seeds, a verdict, one page).")
app.add_typer(experiment_app, name="experiment")


@experiment_app.command("list")
def list_experiments() -> None:
    """Each built-in experiment: the question it answers, the claim it tests and the claim's source."""
    from cnnlab.experiments.catalog import EXPERIMENTS

    table = new_table("experiment", "question", "claim", "source")
    for name in EXPERIMENTS.names():
        exp = EXPERIMENTS.get(name)()
        head = exp.checks[0]
        table.add_row(name, exp.question, head.claim, head.source.cite())
    out.print(table)


@experiment_app.command("run")
def run(
    experiment: str = typer.Argument(..., help="A built-in experiment (see: cnnlab experiment list) or FILE.yaml."),
    data: Optional[str] = typer.Option(None, help="Any dataset cnnlab trains on, or a built-in set's name "
                                                  "(default: the experiment's own)."),
    seeds: Optional[int] = typer.Option(None, min=1, help="Seeds per arm, paired across arms (default: the "
                                                          "experiment's: 3 quick, 5 full)."),
    quick: bool = typer.Option(False, "--quick", help="The small budget: about a minute on a laptop CPU."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Where to write (default experiments/NAME)."),
    jobs: int = typer.Option(1, min=1, help="Arms x seeds run in this many processes at once."),
    accelerator: Optional[str] = typer.Option(None, help="Training arms: cpu, gpu or auto (default: train's)."),
) -> None:
    """Run every arm x seed (a finished one is read, not run again), decide each claim, write the page."""
    from cnnlab.experiments.engine import run_experiment

    quiet_lightning()
    result = run_experiment(experiment, data, seeds=seeds, quick=quick, out=out_dir, jobs=jobs, device=accelerator)
    table = new_table("claim", "measured", "verdict", title=f"{result.name}: {result.question}")
    from cnnlab.experiments.output import measured

    for check in result.checks:
        table.add_row(escape(check.claim), escape(measured(check)), check.verdict)
    out.print(table)
    console.print(f"{len(result.ran)} arm x seed runs measured, {len(result.reused)} read from before")
    console.print(f"verdict: [bold]{result.verdict}[/]")
    console.print(f"page: {result.html_path}\nfigures: {result.json_path}", soft_wrap=True)
