"""The CLI as a person uses it: export -> train -> evaluate -> predict, and the bad inputs.

The commands run in this process through the console script's ``main()`` (``run``); the checks of what a
whole process shows or fetches start one (``run_process``)."""
import json
import os
import subprocess
import sys

import pytest

from conftest import invoke

CNNLAB = [sys.executable, "-m", "cnnlab"]
TINY_FLAGS = ["--blocks", "[{filters: 4}, {filters: 8}]", "--dense", "16", "--progress", "false"]


def run(*args, check=True, cwd=None):
    return invoke(*args, check=check, cwd=cwd)


def run_process(*args, check=True):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*CNNLAB, *map(str, args)], capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    run("datasets", "export", "shapes", root / "shapes", "--size", "16", "--count", "20", "--classes", "3")
    run("train", root / "shapes", "--out", root / "run", "--epochs", "3", "--lr", "0.01", *TINY_FLAGS)
    return root


def test_export_train_evaluate_predict(trained):
    proc = run("evaluate", trained / "run", trained / "shapes", "--json", trained / "m.json")
    metrics = json.loads((trained / "m.json").read_text())
    assert metrics["classes"] == ["circle", "square", "triangle"]
    assert sum(map(sum, metrics["confusion_matrix"])) == 12  # the 20% test split of 60
    assert "macro avg" in proc.stdout and "confusion matrix" in proc.stdout
    proc = run("predict", trained / "run", trained / "shapes" / "test" / "circle", "--json", "--top-k", "2")
    preds = json.loads(proc.stdout)
    assert len(preds) == 4
    assert set(preds[0]) == {"path", "label", "probability", "top_k", "uncertain"}
    assert set(preds[0]["top_k"][0]) == {"label", "probability"} and len(preds[0]["top_k"]) == 2


def test_predict_csv_has_an_uncertain_column_that_agrees_with_json(trained, tmp_path):
    import csv

    images = trained / "shapes" / "test" / "circle"
    preds = json.loads(run("predict", trained / "run", images, "--json", "--threshold", "0.999").stdout)
    run("predict", trained / "run", images, "--csv", tmp_path / "p.csv", "--threshold", "0.999")
    with open(tmp_path / "p.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "label", "probability", "uncertain", "top_k"] and len(rows) == len(preds) == 4
    assert [r["uncertain"] for r in rows] == [str(p["uncertain"]).lower() for p in preds]
    assert all((r["label"] == "") == (r["uncertain"] == "true") for r in rows)


def test_export_then_predict_with_onnx_runtime(trained):
    proc = run("export", trained / "run", "--format", "onnx")
    assert "max abs diff" in proc.stderr and (trained / "run" / "export" / "model.onnx").is_file()
    torch_out = json.loads(run("predict", trained / "run", trained / "shapes" / "test", "--json").stdout)
    onnx_out = json.loads(run("predict", trained / "run", trained / "shapes" / "test", "--json", "--backend", "onnx").stdout)
    assert [p["label"] for p in torch_out] == [p["label"] for p in onnx_out]


def test_summary_of_a_run_and_of_a_preset(trained):
    proc = run("summary", trained / "run")
    assert "input 3x16x16" in proc.stdout and "total params" in proc.stdout
    assert "augmentation: rotation=10.0, translate=0.1, zoom=[0.9, 1.1]" in proc.stdout  # the light default
    proc = run("summary", "lenet5")
    assert "61,706" in proc.stdout


@pytest.mark.slow
def test_corrupt_files_are_reported_in_one_line(tmp_path):
    run("datasets", "export", "shapes", tmp_path / "s", "--size", "12", "--count", "10")
    (tmp_path / "s" / "train" / "circle" / "broken.png").write_bytes(b"garbage")
    # a process of its own: what a person sees includes whatever the libraries would print at start-up
    proc = run_process("train", tmp_path / "s", "--out", tmp_path / "r", "--epochs", "1", *TINY_FLAGS)
    assert "warning: skipped 1 unusable files (broken.png: not a readable image)" in " ".join(proc.stderr.split())
    # A person sees cnnlab's own lines: no info lines or warnings from the libraries (Lightning, torch).
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("data: ") and not [line for line in lines if "INFO" in line or "GPU available" in line
                                                   or "Warning" in line], proc.stderr


@pytest.mark.parametrize("args,message", [
    (["train", "{tmp}/nope", "--out", "{tmp}/r"], "dataset not found"),
    (["train", "{data}", "--out", "{tmp}/r", "--model", "resnt"], "unknown model 'resnt'"),
    (["train", "{data}", "--out", "{tmp}/r", "--activation", "relu7"], "unknown activation 'relu7'"),
    (["train", "{data}", "--out", "{tmp}/r", "--lrr", "0.1"], "unknown flag '--lrr'"),
    (["train", "{data}", "--out", "{tmp}/r", "--lr", "-3"], "invalid value for 'optim.lr'"),
    (["train", "{data}", "--out", "{tmp}/r", "--config", "{tmp}/missing.yaml"], "config file not found"),
    (["evaluate", "{tmp}/norun", "{data}"], "run directory not found"),
    (["predict", "{run}", "{tmp}/missing.png"], "image not found"),
    (["datasets", "export", "imagenet", "{tmp}/x"], "unknown dataset 'imagenet'"),
    (["summary", "vgg99"], "unknown model 'vgg99'"),
    (["export", "{run}", "--format", "tflite"], "unknown export format 'tflite'"),
    (["plot", "features", "{run}", "{tmp}/missing.png"], "image not found"),
    (["plot", "features", "{run}", "{bad}"], "cannot use image"),
    (["plot", "features", "{run}", "{image}", "--layer", "conv99"], "no convolution or pooling layer 'conv99'"),
    (["report", "{tmp}/norun"], "run directory not found"),
    (["predict", "{run}", "{data}", "--backend", "tensorrt"], "unknown backend 'tensorrt'"),
    (["train", "{data}", "--out", "{tmp}/r", "--model", "resnet18", "--weights", "{tmp}/none.pth"], "weights not found"),
])
def test_bad_input_is_one_line_and_nonzero(trained, tmp_path, args, message):
    (tmp_path / "bad.png").write_text("not an image")
    image = next((trained / "shapes" / "test" / "circle").glob("*.png"))
    fill = {"tmp": tmp_path, "data": trained / "shapes", "run": trained / "run", "bad": tmp_path / "bad.png", "image": image}
    proc = run(*[a.format(**fill) for a in args], check=False)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.slow
def test_summary_of_vgg16_counts_the_reference_parameters_offline(tmp_path):
    """The README's example: no weights are needed to count parameters, so none are fetched."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TORCH_HOME": str(tmp_path / "torch"), "HF_HUB_OFFLINE": "1",
           "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}  # no network
    proc = subprocess.run([*CNNLAB, "summary", "vgg16"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "total params: 138,357,544" in proc.stdout
    assert not (tmp_path / "torch").exists()  # nothing downloaded, not even attempted into the cache
