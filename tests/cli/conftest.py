"""The CLI's tests run ``cnnlab ARGS`` in this process (the ``cli`` fixture of tests/conftest.py), with the
library calls replaced by recorders where a test asks: fast, no subprocess."""
from __future__ import annotations

import pytest


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
