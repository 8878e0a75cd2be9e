import json

import pytest
import torch

import cnnlab
from cnnlab.errors import CnnlabError
from cnnlab.inference.export import export


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_parity_and_preprocessing_beside_the_file(tiny_run, tmp_path, fmt):
    result = export(tiny_run, fmt, tmp_path / fmt)
    assert result.path.is_file() and result.max_abs_diff <= 1e-4
    meta = json.loads((tmp_path / fmt / "export.json").read_text())
    assert meta["input"]["shape"] == ["batch", 3, 16, 16] and meta["input"]["dtype"] == "uint8"
    assert json.loads((tmp_path / fmt / "preprocessing.json").read_text())["size"] == [16, 16]


def test_onnx_backend_predicts_like_pytorch(tiny_run, bars, tmp_path):
    files = sorted(bars.rglob("*.png"))[:8]
    torch_preds = cnnlab.load(tiny_run).predict(files)
    onnx_preds = cnnlab.load(tiny_run, backend="onnx").predict(files)
    for a, b in zip(torch_preds, onnx_preds):
        assert a.label == b.label and a.probability == pytest.approx(b.probability, abs=1e-5)


def test_torchscript_file_runs_without_cnnlab(tiny_run, tmp_path):
    result = export(tiny_run, "torchscript", tmp_path)
    model = torch.jit.load(str(result.path))
    assert model(torch.zeros(2, 3, 16, 16, dtype=torch.uint8)).shape == (2, 3)


def test_unknown_format():
    with pytest.raises(CnnlabError, match="unknown export format 'tflite'"):
        export("anything", "tflite")
