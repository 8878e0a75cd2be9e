"""The ``cnnlab`` command: thin wrappers that parse flags, call the Python API and print.

Errors a person can fix are one line on stderr and exit code 2; ``--debug`` shows the traceback.
The commands live by subject in this package; importing it registers them all on ``app``.
"""
from __future__ import annotations

import sys

from rich.markup import escape

# Importing the command modules registers their commands, listed by --help in this order.
from cnnlab.cli import train, results, deploy, models, data, experiment, course  # noqa: F401,I001
from cnnlab.cli.app import app
from cnnlab.cli.output import setup_output
from cnnlab.cli.console import console
from cnnlab.errors import CnnlabError, Interrupted


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
