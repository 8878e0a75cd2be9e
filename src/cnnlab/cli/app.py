"""The ``cnnlab`` Typer application, its command groups, and what the commands share."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List

import typer
from rich.markup import escape

from cnnlab.cli.console import out

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
    from cnnlab.config import ALIASES
    from cnnlab.flags import SECTION_TITLES, key_docs

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
    """The command's extra ``--key value`` flags as ``{key: value}`` (values read as YAML)."""
    from cnnlab.flags import parse_args

    return parse_args(args)


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
