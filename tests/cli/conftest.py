"""Run ``cnnlab ARGS`` in this process, through the same ``main()`` as the console script (its one-line errors
and exit codes), with the library calls replaced where a test asks: fast, no subprocess, no torch start-up."""
from __future__ import annotations

import logging
import sys
import warnings
from dataclasses import dataclass

import pytest


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return self.err.strip().splitlines()


@pytest.fixture
def cli(monkeypatch, capsys):
    """``cli("train", "data", "--lr", "0.1")`` -> Result(exit code, stdout, stderr)."""
    from cnnlab.cli import main
    from cnnlab.cli import output

    root = logging.getLogger()
    monkeypatch.delenv("PYTHONWARNINGS", raising=False)  # setup_output sets it for child processes

    def invoke(*args) -> Result:
        handlers, level = list(root.handlers), root.level
        monkeypatch.setattr(sys, "argv", ["cnnlab", *map(str, args)])
        monkeypatch.setattr(output, "DEBUG", output.DEBUG)
        capsys.readouterr()
        try:
            with warnings.catch_warnings():  # setup_output silences warnings: only for this call
                main()
            code = 0
        except SystemExit as exc:
            code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
        finally:
            root.handlers[:], root.level = handlers, level  # setup_output adds a handler on each call
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


class Recorder:
    """Stands in for a library function: remembers each call's arguments and returns ``value``."""

    def __init__(self, value=None):
        self.value, self.calls = value, []

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return self.value() if callable(self.value) else self.value

    @property
    def args(self):
        assert len(self.calls) == 1, self.calls
        return self.calls[0][0]

    @property
    def kwargs(self):
        assert len(self.calls) == 1, self.calls
        return self.calls[0][1]


@pytest.fixture
def record(monkeypatch):
    """``record(module, "name", value)`` replaces ``module.name`` by a Recorder returning ``value``."""
    def replace(target, name: str, value=None) -> Recorder:
        rec = Recorder(value)
        monkeypatch.setattr(target, name, rec)
        return rec

    return replace
