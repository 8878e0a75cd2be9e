"""Where cnnlab talks to a person: stderr, so stdout stays clean for --json output."""
from __future__ import annotations

from rich.console import Console

console = Console(stderr=True, highlight=False)
out = Console(highlight=False)
