"""What the command line shows: cnnlab's log lines through rich, and the libraries kept quiet."""
from __future__ import annotations

import logging
import os

from cnnlab.cli.console import console


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
    it keeps to warnings, like every other library here (the commands that train call this first)."""
    if not DEBUG:
        import lightning  # noqa: F401 - the commands that call this train with it: its handler exists from here

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
