"""Where cnnlab talks to a person: stderr, so stdout stays clean for --json output."""
from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

# Not a terminal (a file, a pipe, CI): lines as wide as they need, not rich's 80 columns, so that nothing
# is folded for want of room.
console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 240)
out = Console(highlight=False, width=None if sys.stdout.isatty() else 240)


def new_table(*headers: str, **kwargs) -> Table:
    """A table whose cells wrap instead of being cut (paths and layer names stay whole at any width)."""
    table = Table(**kwargs)
    for header in headers:
        table.add_column(header, overflow="fold")
    return table
