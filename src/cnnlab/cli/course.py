"""``cnnlab course``: every experiment of the course, then one page that answers the course's 15 questions."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cnnlab.cli.app import app
from cnnlab.cli.output import quiet_lightning
from cnnlab.cli.console import console


@app.command()
def course(
    quick: bool = typer.Option(False, "--quick", help="The small budgets: minutes on a laptop CPU (the full run "
                                                      "suits a GPU)."),
    out_dir: Path = typer.Option(Path("course"), "--out", "-o", help="Where to write: OUT/index.html, and one "
                                                                     "folder per experiment."),
    seeds: Optional[int] = typer.Option(None, min=1, help="Seeds per arm (default: each experiment's own)."),
    jobs: int = typer.Option(1, min=1, help="Arms x seeds run in this many processes at once."),
    accelerator: Optional[str] = typer.Option(None, help="Training arms: cpu, gpu or auto."),
) -> None:
    """Run every experiment of the course (a finished arm x seed is read, not run again) and write index.html:
    the 15 questions of a CNN course, each with a short answer, the measured evidence and a command to try."""
    from cnnlab.experiments.course import run_course

    quiet_lightning()

    def said(name: str, what: str) -> None:
        words = {"ran": "done", "read": f"finished before, read from {out_dir / name}"}
        console.print(f"{name}: {words.get(what, 'no such experiment yet')}", soft_wrap=True)

    index = run_course(out_dir, quick=quick, seeds=seeds, jobs=jobs, device=accelerator, hook=said)
    console.print(f"course page: {index}", soft_wrap=True)
