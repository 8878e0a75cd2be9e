"""cli/console.py: people read stderr (stdout stays clean for --json), and tables fold long cells instead of
cutting them."""
from __future__ import annotations

import io

from rich.console import Console

import importlib

room = importlib.import_module("cnnlab.cli.console")  # the package binds the name console to the Console object


def test_messages_go_to_stderr_and_results_to_stdout():
    assert room.console.stderr is True and room.out.stderr is False


def test_a_table_folds_a_long_path_and_keeps_it_whole():
    path = "runs/" + "very-long-folder-name/" * 6 + "model.safetensors"
    table = room.new_table("file", "size")
    table.add_row(path, "12 MB")
    buf = io.StringIO()
    Console(file=buf, width=40).print(table)
    text = "".join(line.strip("│┃ ") for line in buf.getvalue().splitlines())
    assert "model.safetensors" in text and "…" not in buf.getvalue()
    assert all(len(line) <= 40 for line in buf.getvalue().splitlines())
