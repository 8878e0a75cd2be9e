"""Shared fixtures: tiny datasets and a tiny trained run, built in temporary folders."""
from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

# Two pytest-xdist workers on two cores (the Makefile): one thread each avoids oversubscription.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")



def _weight(item) -> int:
    """0: pinned to one worker by an xdist group (the DDP tests alone take minutes), 1: marked slow, 2: the rest."""
    return 0 if item.get_closest_marker("xdist_group") else 1 if item.get_closest_marker("slow") else 2


def pytest_collection_modifyitems(session, config, items):
    """Whole modules that hold a long test first, each module's own order kept: the workers then end on short
    tests together instead of one of them running a minute-long test alone at the end (the suite's wall time is
    about its CPU time over the cores, plus that tail)."""
    first: dict[str, int] = {}
    for item in items:
        name = item.nodeid.split("::")[0]
        first[name] = min(first.get(name, 2), _weight(item))
    items.sort(key=lambda item: first[item.nodeid.split("::")[0]])


# A very small CNN that trains in well under a second on 16x16 images.
TINY = {"blocks": [{"filters": 4}, {"filters": 8}], "dense": [16], "dropout": 0.0, "progress": False, "augment": "none"}


def write_images(root: Path, counts: dict[str, int], size: int = 16, mode: str = "RGB", seed: int = 0) -> Path:
    """Class folders of simple, learnable images: class k is a bright bar at row band k."""
    rng = np.random.default_rng(seed)
    for k, (name, n) in enumerate(counts.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            arr = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
            band = (k * size) // len(counts)
            arr[band: band + max(2, size // len(counts)), :, :] = 230
            img = Image.fromarray(arr)
            if mode != "RGB":
                img = img.convert(mode)
            img.save(folder / f"{name}_{i:03d}.png")
    return root


def write_regression_manifest(root: Path, count: int) -> Path:
    """``root/m.csv``: bars images of three classes with the numeric targets 0, 1 and 2 (a regression task)."""
    write_images(root / "imgs", {"a": count, "b": count, "c": count})
    target = {"a": 0.0, "b": 1.0, "c": 2.0}
    lines = ["path,target"] + [f"imgs/{f.parent.name}/{f.name},{target[f.parent.name]}"
                               for f in sorted((root / "imgs").rglob("*.png"))]
    (root / "m.csv").write_text("\n".join(lines) + "\n")
    return root / "m.csv"


@pytest.fixture(autouse=True)
def image_cache(tmp_path_factory, monkeypatch) -> Path:
    """Every test's image cache (data.cache disk) in a temporary folder, never the home folder's."""
    root = tmp_path_factory.mktemp("cnnlab-cache")
    monkeypatch.setenv("CNNLAB_CACHE", str(root))
    return root


@pytest.fixture(scope="session")
def bars(tmp_path_factory) -> Path:
    """3 classes x 20 images, 16x16 RGB, no given split."""
    return write_images(tmp_path_factory.mktemp("bars"), {"a": 20, "b": 20, "c": 20})


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    from cnnlab.data.samples import export

    root = tmp_path_factory.mktemp("shapes") / "shapes"
    export("shapes", root, size=16, count=15, classes=3, seed=0)
    return root


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, bars) -> Path:
    """A trained run directory on ``bars`` (a few seconds)."""
    import cnnlab

    out = tmp_path_factory.mktemp("runs") / "tiny"
    cnnlab.train(bars, out, epochs=3, lr=0.01, batch_size=16, **TINY)
    return out


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def code(self) -> int:
        return self.returncode

    @property
    def out(self) -> str:
        return self.stdout

    @property
    def err(self) -> str:
        return self.stderr

    @property
    def err_lines(self) -> list[str]:
        return self.stderr.strip().splitlines()


def invoke(*args, check: bool = False, cwd: Path | str | None = None) -> CliResult:
    """``cnnlab ARGS`` in this process, through the console script's ``main()`` (its one-line errors and exit
    codes), with stdout and stderr captured: the CLI's behaviour without a new interpreter's seconds of imports.
    Tests about the process itself (signals, its imports, its environment) start one instead."""
    from cnnlab.cli import main, output

    root, mine = logging.getLogger(), logging.getLogger("cnnlab")
    saved = list(root.handlers), root.level, output.DEBUG, os.environ.get("PYTHONWARNINGS"), sys.argv, mine.level
    out, err = io.StringIO(), io.StringIO()
    sys.argv = ["cnnlab", *map(str, args)]
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                contextlib.chdir(cwd or "."):
            main()  # setup_output silences warnings, adds a root handler, sets PYTHONWARNINGS: all put back below
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    finally:
        root.handlers[:], root.level, output.DEBUG, sys.argv = saved[0], saved[1], saved[2], saved[4]
        mine.setLevel(saved[5])
        if saved[3] is None:
            os.environ.pop("PYTHONWARNINGS", None)
        else:
            os.environ["PYTHONWARNINGS"] = saved[3]
    result = CliResult(code, out.getvalue(), err.getvalue())
    if check and code != 0:
        raise AssertionError(f"exit {code}\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def cli():
    """``cli("train", "data", "--lr", "0.1")`` -> CliResult(exit code, stdout, stderr), in this process."""
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
