"""Where cnnlab talks to a person: stderr, so stdout stays clean for --json output."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table

console = Console(stderr=True, highlight=False)
out = Console(highlight=False)


def new_table(*headers: str, **kwargs) -> Table:
    """A table whose cells wrap instead of being cut (paths and layer names stay whole at any width)."""
    table = Table(**kwargs)
    for header in headers:
        table.add_column(header, overflow="fold")
    return table
