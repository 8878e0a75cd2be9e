"""The documentation: the MkDocs site builds without a warning (links and anchors checked), its course pages
carry the published experiments' own figures, and every `cnnlab` command in the README and the docs parses
against the real command line: its command exists, its options exist with values they accept, and its config
flags are config keys with valid values."""
from __future__ import annotations

import html
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from doc_commands import ROOT, lines

COMMANDS = [(line.page, line.command) for line in lines()]


def test_the_docs_hold_the_commands_a_newcomer_needs():
    subcommands = {shlex.split(c)[1] for _, c in COMMANDS}
    assert {"train", "evaluate", "predict", "serve", "export", "report", "experiment", "course", "datasets"} <= subcommands


def _resolve(group, words: list[str]):
    """The (sub)command the words name, the words left for it, and its name (Typer's groups, by duck type:
    Typer has its own copy of click's classes)."""
    command, path = group, []
    while hasattr(command, "list_commands") and words and not words[0].startswith("-"):
        sub = command.get_command(command.make_context(command.name or "cnnlab", ["--help"], resilient_parsing=True),
                                  words[0])
        assert sub is not None, f"no command '{' '.join(path + [words[0]])}'"
        command, path, words = sub, path + [words[0]], words[1:]
    return command, words, " ".join(path)


@pytest.mark.parametrize("page,command", COMMANDS, ids=[f"{p}:{c[:60]}" for p, c in COMMANDS])
def test_every_documented_command_parses(page, command, tmp_path):
    from cnnlab.cli import app
    from cnnlab.cli.app import parse_extra
    from cnnlab.config import load_config

    words = shlex.split(command)[1:]
    if words and words[0] == "cnnlab":
        words = words[1:]
    cmd, args, name = _resolve(typer.main.get_command(app), words)
    ctx = cmd.make_context(name, list(args), resilient_parsing=False)  # raises on unknown options or bad values
    if name == "datasets export" and ctx.args:  # its flags are the generator's own: run it (seconds)
        from cnnlab.data.samples import export

        export(ctx.params["name"], tmp_path / "set", **{k.replace("-", "_"): v for k, v in parse_extra(ctx.args).items()})
    elif ctx.args:  # the config keys a training command takes as flags
        load_config(None, parse_extra(ctx.args))


@pytest.mark.slow
def test_the_site_builds_strictly_with_the_published_figures(tmp_path):
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)], cwd=ROOT,
                          capture_output=True, text=True, env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    course = (site / "course" / "index.html").read_text()
    assert len(re.findall(r"<h2 id=", course)) == 15  # every question of the course
    published = sorted((ROOT / "docs" / "results").glob("*.json"))
    for path in published:  # each published verdict and figure is on the course page and its own page
        doc = json.loads(path.read_text())
        head = doc["checks"][0]
        assert html.escape(head["measured"], quote=False) in course, path.name
        own = (site / "course" / "experiments" / path.stem / "index.html").read_text()
        assert f"Verdict: {doc['verdict']}." in own
        assert (site / "course" / "img" / f"{path.stem}.png").stat().st_size > 1000
