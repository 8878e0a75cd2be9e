import json
import shutil
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import cnnlab
from cnnlab.errors import CnnlabError
from cnnlab.inference.export import ensure_onnx, export, weights_sha256
from conftest import invoke

SIZES = [(9, 12), (40, 40), (23, 57)]  # smaller, larger and non-square than the runs' 16x16


@pytest.fixture(scope="module")
def gray_run(tmp_path_factory):
    """A tiny run on grayscale images: a one-channel model."""
    from conftest import TINY, write_images

    root = tmp_path_factory.mktemp("gray")
    data = write_images(root / "data", {"a": 20, "b": 20, "c": 20}, mode="L")
    cnnlab.train(data, root / "run", epochs=3, lr=0.01, batch_size=16, **TINY)
    return root / "run"


def cli(*args):
    """The CLI in this process: these tests are about the answers, not the process (ONNX Runtime's own runs below
    are separate processes on purpose)."""
    return invoke(*args, check=True).stdout


def images_of_other_sizes(folder, mode):
    """Noisy bars (the runs' classes) at sizes other than the input: the resize decides the answer."""
    rng = np.random.default_rng(1)
    paths = []
    for h, w in SIZES:
        for k in range(3):
            arr = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
            band = slice(k * h // 3, k * h // 3 + max(1, h // 3))
            arr[band] = np.clip(arr[band].astype(int) + 90, 0, 255)
            paths.append(folder / f"{h}x{w}_{k}.png")
            Image.fromarray(arr).convert(mode).save(paths[-1])
    return paths


def plain_client(folder, paths, mode):
    """export.json's steps in numpy, Pillow and onnxruntime: the decoded pixels as (1, H, W, C) uint8, no resize,
    no normalisation."""
    info = json.loads((folder / "export.json").read_text())
    session = ort.InferenceSession(str(folder / info["file"]), providers=["CPUExecutionProvider"])
    out = []
    for path in paths:
        pixels = np.asarray(Image.open(path).convert(mode), dtype=np.uint8)
        out.append(session.run(["probabilities"], {"image": pixels.reshape(1, *pixels.shape[:2], len(mode))})[0][0])
    return np.array(out)


def predicted(run, paths):
    """``cnnlab predict --json``'s probabilities, in class order."""
    classes = json.loads((run / "classes.json").read_text())
    rows = json.loads(cli("predict", run, *paths, "--json"))
    return np.array([[{t["label"]: t["probability"] for t in row["top_k"]}[c] for c in classes] for row in rows])


@pytest.mark.slow
@pytest.mark.parametrize("which,mode", [("tiny_run", "RGB"), ("gray_run", "L")])
def test_onnx_export_gives_cnnlab_predict_answer_at_other_sizes_in_plain_onnxruntime(which, mode, request, tmp_path):
    run = shutil.copytree(request.getfixturevalue(which), tmp_path / "run")
    cli("export", run)
    paths = images_of_other_sizes(tmp_path, mode)
    expected = predicted(run, paths)
    got = plain_client(run / "export", paths, mode)
    assert np.abs(got - expected).max() < 1e-3, np.abs(got - expected).max()
    # the shipped client, in a process where cnnlab and torch cannot be imported
    script = (f"import sys, runpy; sys.modules.update(cnnlab=None, torch=None); sys.argv = sys.argv[1:]; "
              f"runpy.run_path(sys.argv[0], run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", script, str(run / "export" / "client.py"), *map(str, paths)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    classes = json.loads((run / "classes.json").read_text())
    shipped = np.array([[{t["label"]: t["probability"] for t in json.loads(line)["top_k"]}[c] for c in classes]
                        for line in proc.stdout.splitlines()])
    assert np.abs(shipped - expected).max() < 1e-3
    # what the tolerance tells apart: a client resizing without antialias (OpenCV's INTER_LINEAR) is further off
    session = ort.InferenceSession(str(run / "export" / "model.onnx"), providers=["CPUExecutionProvider"])
    naive = []
    for path in paths:
        x = torch.from_numpy(np.array(Image.open(path).convert(mode))).reshape(1, *Image.open(path).size[::-1], -1)
        x = F.interpolate(x.permute(0, 3, 1, 2).float(), size=(16, 16), mode="bilinear", antialias=False)
        x = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
        naive.append(session.run(["probabilities"], {"image": x})[0][0])
    assert np.abs(np.array(naive) - expected).max() > 1e-2


def test_following_export_json_cannot_normalise_twice(tiny_run, tmp_path):
    # without the export a serving test on this worker may have made in the shared run (serve --backend auto)
    run = shutil.copytree(tiny_run, tmp_path / "run", ignore=shutil.ignore_patterns("export"))
    folder = run / "export"
    folder.mkdir()
    shutil.copy(run / "preprocessing.json", folder / "preprocessing.json")  # as an older cnnlab export left it
    export(run)
    assert not (folder / "preprocessing.json").exists() and (run / "preprocessing.json").is_file()
    info = json.loads((folder / "export.json").read_text())
    text = (folder / "export.json").read_text()
    assert "mean" not in text.replace("No mean", "") and '"std"' not in text  # nothing to apply a second time
    assert info["input"] == {**info["input"], "dtype": "uint8", "layout": "NHWC",
                             "shape": ["batch", "height", "width", 3]}
    assert info["normalisation"].startswith("inside the model: do not apply it")
    assert info["resize"]["antialias"] is True and info["resize"]["where"] == "inside the model"
    # the graph takes uint8 only: pixels normalised as the old preprocessing.json said are refused, not mis-scored
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    pixels = np.random.default_rng(0).integers(0, 256, (1, 16, 16, 3)).astype(np.uint8)
    with pytest.raises(Exception, match="(?i)type"):
        session.run(None, {"image": ((pixels / 255 - 0.5) / 0.5).astype(np.float32)})
    logits, probabilities = session.run(None, {"image": pixels})
    expected = cnnlab.load(run, "cpu").forward(torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous())
    assert np.abs(probabilities - expected.numpy()).max() < 1e-5


def test_an_export_elsewhere_leaves_a_foreign_preprocessing_json(tiny_run, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "preprocessing.json").write_text('{"mine": 1}')
    export(tiny_run, "onnx", tmp_path / "out")
    assert (tmp_path / "out" / "preprocessing.json").read_text() == '{"mine": 1}'


def _old_export(run):
    """An export as cnnlab wrote it before contract 2: fixed-size NCHW input, preprocessing.json beside it."""
    folder = run / "export"
    folder.mkdir(exist_ok=True)
    model = cnnlab.load(run, "cpu").model
    x = torch.zeros(2, 3, 16, 16, dtype=torch.uint8)
    torch.onnx.export(model, (x,), str(folder / "model.onnx"), input_names=["image"], output_names=["output"],
                      dynamic_axes={"image": {0: "batch"}, "output": {0: "batch"}}, dynamo=False)
    shutil.copy(run / "preprocessing.json", folder / "preprocessing.json")
    (folder / "export.json").write_text(json.dumps({"format": "onnx", "file": "model.onnx",
                                                    "weights_sha256": weights_sha256(cnnlab.load(run).run)}))


def test_an_older_export_still_predicts_and_serve_auto_remakes_it(tiny_run, bars, tmp_path):
    run = shutil.copytree(tiny_run, tmp_path / "run", ignore=shutil.ignore_patterns("export"))
    _old_export(run)
    files = sorted(bars.rglob("*.png"))[:6]
    old = cnnlab.load(run, backend="onnx")
    assert old.session.get_inputs()[0].shape == ["batch", 3, 16, 16]
    for a, b in zip(cnnlab.load(run).predict(files), old.predict(files)):
        assert a.label == b.label and a.probability == pytest.approx(b.probability, abs=1e-5)
    ensure_onnx(run)  # serve --backend auto: an export of the older contract is made again
    assert json.loads((run / "export" / "export.json").read_text())["input"]["layout"] == "NHWC"
    assert not (run / "export" / "preprocessing.json").exists()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_parity_and_contract_beside_the_file(tiny_run, tmp_path, fmt):
    result = export(tiny_run, fmt, tmp_path / fmt)
    assert result.path.is_file() and result.max_abs_diff <= 1e-4
    meta = json.loads((tmp_path / fmt / "export.json").read_text())
    shape = ["batch", "height", "width", 3] if fmt == "onnx" else ["batch", 3, 16, 16]
    assert meta["input"]["shape"] == shape and meta["input"]["dtype"] == "uint8"
    assert meta["input"]["layout"] == ("NHWC" if fmt == "onnx" else "NCHW")
    assert (meta["resize"]["where"] == "inside the model") == (fmt == "onnx")
    assert not (tmp_path / fmt / "preprocessing.json").exists()
    assert (tmp_path / fmt / "client.py").is_file() == (fmt == "onnx")


def test_onnx_backend_predicts_like_pytorch_on_the_graph_from_its_input_size(tiny_run, bars, tmp_path):
    run = shutil.copytree(tiny_run, tmp_path / "run", ignore=shutil.ignore_patterns("export"))
    files = sorted(bars.rglob("*.png"))[:8]
    torch_preds = cnnlab.load(run).predict(files)
    onnx_predictor = cnnlab.load(run, backend="onnx")
    # the server's batches come resized: the session starts after the graph's resize, as an older export did
    assert not onnx_predictor.nhwc and onnx_predictor.session.get_inputs()[0].shape[1:] == [3, 16, 16]
    for a, b in zip(torch_preds, onnx_predictor.predict(files)):
        assert a.label == b.label and a.probability == pytest.approx(b.probability, abs=1e-5)


def test_torchscript_file_runs_without_cnnlab(tiny_run, tmp_path):
    result = export(tiny_run, "torchscript", tmp_path)
    model = torch.jit.load(str(result.path))
    assert model(torch.zeros(2, 3, 16, 16, dtype=torch.uint8)).shape == (2, 3)


def test_unknown_format():
    with pytest.raises(CnnlabError, match="unknown export format 'tflite'"):
        export("anything", "tflite")


@pytest.mark.slow
def test_a_regression_export_gives_cnnlab_predict_value_at_another_size(tmp_path):
    from conftest import TINY, write_regression_manifest

    run = cnnlab.train(write_regression_manifest(tmp_path, 8), tmp_path / "run", task="regression", epochs=2, lr=0.01, **TINY).run_dir
    export(run)
    info = json.loads((run / "export" / "export.json").read_text())
    assert info["task"] == "regression" and set(info["outputs"]) == {"output"} and info["temperature"] is None
    path = images_of_other_sizes(tmp_path, "RGB")[4]  # 40x40
    proc = subprocess.run([sys.executable, str(run / "export" / "client.py"), str(path)], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    value = json.loads(proc.stdout)["value"]
    assert value == pytest.approx(cnnlab.load(run, "cpu").predict(path)[0].label, abs=1e-4)


def test_serving_with_backend_auto_on_the_cpu_exports_to_onnx_once_and_falls_back_to_pytorch(tiny_run, tmp_path,
                                                                                           monkeypatch, caplog):
    import logging
    import shutil

    from cnnlab.inference import export as export_module
    from cnnlab.inference.export import ensure_onnx

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("export"))
    path = ensure_onnx(run)
    assert path == run / "export" / "model.onnx" and path.is_file()
    made = path.stat().st_mtime_ns
    assert ensure_onnx(run) == path and path.stat().st_mtime_ns == made  # current: kept, not made again
    info = json.loads((run / "export" / "export.json").read_text())
    info["weights_sha256"] = "0" * 64  # as if trained again since
    (run / "export" / "export.json").write_text(json.dumps(info))
    assert ensure_onnx(run) == path and path.stat().st_mtime_ns != made
    assert json.loads((run / "export" / "export.json").read_text())["weights_sha256"] != "0" * 64

    other = tmp_path / "other"
    shutil.copytree(tiny_run, other, ignore=shutil.ignore_patterns("export"))

    def refuse(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'aten::novel' to ONNX opset version 18 is not supported")

    monkeypatch.setattr(export_module, "export", refuse)
    with caplog.at_level(logging.INFO, logger="cnnlab"):
        assert ensure_onnx(other) is None
    assert any("PyTorch (no ONNX export: Exporting the operator" in r.getMessage() for r in caplog.records)
    assert not (other / "export" / "model.onnx").exists()
