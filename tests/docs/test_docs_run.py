"""Every `cnnlab` command of the README and the docs, run for real, page by page in the order a reader meets
them (so `train` comes before `evaluate`, `serve` and `export`), in a sandbox folder where the paths the docs
name exist: the built-in sets, the images that stand for the reader's own (`digit.png`, `more_digits/`,
`photos/`, ...), and the runs another page made (`runs/mnist`).

What is changed, to keep the whole file to about two minutes on two cores, and nothing else:
- the built-in sets `mnist-5k` and `digits` are tiny (tests/tiny_builtins.py: 12 training and 4 test images
  per class, the same classes, sizes and split);
- `train` and `compare` get `--epochs 1` (in place of the page's own `--epochs N`), `lr-find` gets
  `--batch-size 8` (its 100 steps on small batches), `experiment run` gets `--seeds 1`;
- an experiment a page runs again (`experiment run activations --quick` on two pages) finds the first page's
  finished arms x seeds in its folder and reads them: the resumability the docs describe;
- `serve` gets a free `--port` and runs until it answers `/model` with the run's classes, then stops: in a
  thread of this process, or in a process of its own with `--workers` (its supervisor forks them).
Commands that need what this machine lacks (GPUs, a cluster, a download, the full budget's minutes) are marked
so on their line and only parsed (test_docs.py). Commands another test already runs end to end (`cnnlab course
--quick`, the two-process CPU training and its `--resume`) name that test in doc_commands.RUN_BY, and the last
test here checks that it exists.
"""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import invoke, write_images
from doc_commands import NEEDS, ROOT, RUN_BY, Line, lines, yaml_files
from tiny_builtins import use_tiny_builtins

LINES = lines()
PAGES = list(dict.fromkeys(line.page for line in LINES))


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """What other pages make and this one uses: the tiny mnist-5k export, a run trained on it, and a run on
    digits 0-4 (the source of the transfer guide's `--weights runs/digits_0_4`)."""
    from cnnlab.data.samples import export

    root = tmp_path_factory.mktemp("made")
    with pytest.MonkeyPatch.context() as mp:
        use_tiny_builtins(mp)
        export("mnist-5k", root / "data" / "mnist")
    for split in ("train", "test"):
        for digit in range(5):
            shutil.copytree(root / "data" / "mnist" / split / str(digit), root / "digits_0_4" / split / str(digit))
            shutil.copytree(root / "data" / "mnist" / split / str(digit + 5), root / "digits_5_9" / split / str(digit + 5))
    for data, run in (("data/mnist", "runs/mnist"), ("digits_0_4", "runs/digits_0_4")):
        invoke("train", root / data, "--out", root / run, "--epochs", "1", check=True)
    return root


def _reader_files(box: Path, made: Path, weights: bool) -> None:
    """The images the docs say stand for the reader's own, and (``weights``) ~/resnet18.pth: torchvision's
    ResNet-18, untrained."""
    import torch
    import torchvision

    test = made / "data" / "mnist" / "test"
    shutil.copy(sorted((test / "7").glob("*.png"))[0], box / "digit.png")
    (box / "more_digits").mkdir()
    for digit in "123":
        shutil.copy(sorted((test / digit).glob("*.png"))[0], box / "more_digits" / f"{digit}.png")
    shutil.copytree(test, box / "other_digits")
    write_images(box / "photos", {"cat": 6, "dog": 6}, size=32)
    (box / "home").mkdir()
    if weights:
        torch.save(torchvision.models.resnet18().state_dict(), box / "home" / "resnet18.pth")


SEEDS = ("data/mnist", "runs/mnist", "runs/digits_0_4", "digits_5_9")


def _named(word: str) -> str | None:
    """The seedable path a word names (the longest that fits), if any."""
    word = word.rstrip("/")
    fits = [key for key in SEEDS if word == key or word.startswith(key + "/")]
    return max(fits, key=len) if fits else None


def _made_by(words: list[str]) -> set:
    """The seedable paths a command makes: an export's folder, a new training run."""
    if words[:2] == ["datasets", "export"]:
        return {_named(words[3])}
    if words[0] == "train" and "--out" in words and "--resume" not in words:
        return {_named(words[words.index("--out") + 1])}
    return set()


def _seeds(page_lines: list[Line]) -> set[str]:
    """The paths a page uses before any of its commands makes them."""
    made_here, needed = set(), set()
    for line in page_lines:
        words = line.words()
        outs = _made_by(words)
        needed |= {key for w in words if (key := _named(w)) and key not in made_here | outs}
        made_here |= outs
    return needed


def _sandbox(page: str, root: Path, made: Path) -> Path:
    page_lines = [line for line in LINES if line.page == page]
    _reader_files(root, made, weights=any("~/resnet18.pth" in line.command for line in page_lines))
    for key in _seeds(page_lines):
        shutil.copytree(made / key, root / key)
    for name, text in yaml_files(page).items():
        (root / name).write_text(text)
    return root


def _capped(words: list[str]) -> list[str]:
    """The budget caps the module's docstring names, appended; nothing else changes."""
    if words[0] in ("train", "compare") and "--resume" not in words:
        if "--epochs" in words:
            i = words.index("--epochs")
            words = words[:i] + words[i + 2:]
        return words + ["--epochs", "1"]
    if words[0] == "lr-find":
        return words + ["--batch-size", "8"]
    if words[:2] == ["experiment", "run"]:
        return words + ["--seeds", "1"]
    return words


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model_info(port: int, alive) -> dict | None:
    """GET /model once the server answers; None if it stopped first (polls, not a time bound)."""
    for _ in range(480):
        if not alive():
            return None
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/model", timeout=5) as answer:
                return json.loads(answer.read())
        except OSError:
            time.sleep(0.25)
    return None


def _check_classes(info: dict | None, box: Path, run: str, said: str) -> None:
    """The server answered with the run's own classes (classes.json: a list, or a document holding one)."""
    assert info is not None, said
    classes = json.loads((box / run / "classes.json").read_text())
    assert info["classes"] == (classes["classes"] if isinstance(classes, dict) else classes)


def _serve_in_thread(words: list[str], box: Path, monkeypatch) -> None:
    """One worker: the command in this process, its uvicorn server in a thread, stopped once it answered."""
    import uvicorn

    servers, port = [], _port()

    def run(app, **kwargs):  # uvicorn.run, keeping the server so that the test can stop it
        servers.append(uvicorn.Server(uvicorn.Config(app, **kwargs)))
        servers[-1].run()

    monkeypatch.setattr(uvicorn, "run", run)
    result = []
    thread = threading.Thread(target=lambda: result.append(invoke(*words, "--port", str(port), cwd=box)), daemon=True)
    thread.start()
    try:
        _check_classes(_model_info(port, thread.is_alive), box, words[1], str(result and result[0].err))
    finally:
        for server in servers:
            server.should_exit = True
        thread.join(timeout=60)
    assert result and result[0].code == 0, result and result[0].err


def _serve_in_process(words: list[str], box: Path) -> None:
    """Several workers: uvicorn's supervisor forks them, so the command runs in a process of its own."""
    port = _port()
    server = subprocess.Popen([sys.executable, "-m", "cnnlab", *words, "--port", str(port)], cwd=box,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        info = _model_info(port, lambda: server.poll() is None)
    finally:
        server.terminate()
        said = server.communicate(timeout=60)[0]
    _check_classes(info, box, words[1], said)


def _written(words: list[str]) -> list[str]:
    """The files and folders the command says it writes."""
    out = [words[i + 1] for i, w in enumerate(words[:-1]) if w in ("--out", "--json", "--csv")
           and not words[i + 1].startswith("-")]
    return out + ([words[3]] if words[:2] == ["datasets", "export"] else [])


def _run(line: Line, box: Path, monkeypatch) -> None:
    words = _capped(line.words())
    if words[0] == "serve" and "--workers" in words:
        _serve_in_process(words, box)
    elif words[0] == "serve":
        _serve_in_thread(words, box, monkeypatch)
    else:
        found = invoke(*words, cwd=box)
        assert found.code == 0, f"{line.command}\n{found.out[-3000:]}\n{found.err[-3000:]}"
    for path in _written(words):
        assert (box / path).exists(), f"{line.command} did not write {path}"


@pytest.mark.slow
@pytest.mark.xdist_group("docs-run")  # one worker: the pages share what `made` and earlier pages made
@pytest.mark.parametrize("page", PAGES)
def test_every_command_on_the_page_runs(page, made, tmp_path, monkeypatch):
    box = _sandbox(page, tmp_path, made)
    if (made / "experiments").is_dir():  # what earlier pages' experiments finished
        shutil.copytree(made / "experiments", box / "experiments")
    monkeypatch.setenv("HOME", str(box / "home"))
    use_tiny_builtins(monkeypatch)
    for line in LINES:
        if line.page == page and not line.needs and line.command not in RUN_BY:
            _run(line, box, monkeypatch)
    if (box / "experiments").is_dir():
        shutil.copytree(box / "experiments", made / "experiments", dirs_exist_ok=True)


def test_what_cannot_run_here_is_marked_on_its_line_and_run_elsewhere_is_named_there():
    for line in LINES:
        assert ("needs " in line.comment.lower()) == bool(line.needs), (line.page, line.command, line.comment)
    assert {line.command for line in LINES if line.needs} and all(any(k in line.command for line in LINES)
                                                                   for k in NEEDS)
    for command, test in RUN_BY.items():
        path, name = test.split("::")
        assert any(line.command == command for line in LINES) and f"def {name}(" in (ROOT / path).read_text()
