import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from PIL import Image
from safetensors.torch import load_file, save_file

import cnnlab
from cnnlab.errors import CnnlabError
from cnnlab.models.registry import MODELS


def test_predict_accepts_paths_arrays_and_pil_images(tiny_run, bars):
    f = sorted((bars / "b").glob("*.png"))[0]
    predictor = cnnlab.load(tiny_run)
    by_path = predictor.predict(f, top_k=2)[0]
    by_pil = predictor.predict(Image.open(f))[0]
    by_array = predictor.predict(np.asarray(Image.open(f)))[0]
    assert by_path.path == str(f) and len(by_path.top_k) == 2
    assert by_path.label == by_pil.label == by_array.label
    assert by_path.probability == pytest.approx(by_pil.probability, abs=1e-6)
    assert sum(t["probability"] for t in predictor.predict(f, top_k=3)[0].top_k) == pytest.approx(1.0, abs=1e-4)


def test_prediction_path_does_not_import_lightning(tiny_run, bars):
    f = sorted(bars.rglob("*.png"))[0]
    code = (f"import sys, cnnlab; cnnlab.load({str(tiny_run)!r}).predict({str(f)!r}); "
            "print('lightning' in sys.modules, 'cnnlab.training' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_unreadable_image_is_a_clear_error(tiny_run, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(CnnlabError, match="cannot use image .*bad.png: not a readable image"):
        cnnlab.load(tiny_run).predict(bad)


def test_weights_from_another_model_are_a_clear_error(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    state = load_file(str(run / "model.safetensors"))
    state["features.0.body.0.0.weight"] = state["features.0.body.0.0.weight"][:2].contiguous()
    save_file(state, str(run / "model.safetensors"))
    with pytest.raises(CnnlabError, match="do not fit model 'cnn-small'"):
        cnnlab.load(run)


def test_incomplete_run_directory_is_a_clear_error(tmp_path):
    (tmp_path / "config.yaml").write_text("{}")
    with pytest.raises(CnnlabError, match="not a complete cnnlab run directory: missing classes.json") as info:
        cnnlab.load(tmp_path)
    assert f"continue it with: cnnlab train --resume --out {tmp_path})" in str(info.value)


class _LastOutputs(Callback):
    """The trained model's probabilities for fixed images, in memory, as training ends (before any saving)."""

    def __init__(self, images):
        self.images = images

    def on_train_end(self, trainer, pl_module):
        was = pl_module.training
        with torch.no_grad():
            self.probs = pl_module.model.eval()(self.images).softmax(1)
        pl_module.train(was)


@pytest.mark.parametrize("preset", [n for n in MODELS.names() if not MODELS.get(n).pretrained])
def test_every_preset_reloads_from_its_run_directory_with_the_same_predictions(tmp_path, bars, preset):
    from cnnlab.data.images import decode

    paths = sorted(bars.rglob("*.png"))[::7]
    images = torch.stack([decode(p, 3, (16, 16)) for p in paths])
    seen = _LastOutputs(images)
    extra = {"blocks": [{"filters": 4}, {"filters": 8}]} if preset == "cnn" else {}
    # One epoch: the saved weights are the last ones, the model held in memory at the end.
    result = cnnlab.train(bars, tmp_path / "run", model=preset, epochs=1, input_size=16, progress=False,
                          val_split=0.0, callbacks=[seen], **extra)
    config = (result.run_dir / "config.yaml").read_text()
    assert ("activation: tanh" in config) == (preset == "lenet5")  # the preset's choices are written out
    predictor = cnnlab.load(result.run_dir, "cpu")
    torch.testing.assert_close(predictor.outputs(list(images)), seen.probs, atol=1e-6, rtol=1e-5)
    preds = predictor.predict(paths)
    assert [p.label for p in preds] == ["abc"[i] for i in seen.probs.argmax(1)]


def test_predictions_of_a_batch_are_each_rows_top_k_in_order(tiny_run):
    predictor = cnnlab.load(tiny_run)
    k = len(predictor.classes)
    out = torch.softmax(torch.randn(7, k, generator=torch.Generator().manual_seed(0)), dim=1)
    preds = predictor.to_predictions(out, [f"{i}.png" for i in range(7)], top_k=k, threshold=0.6)
    assert [p.path for p in preds] == [f"{i}.png" for i in range(7)]
    for row, pred in zip(out, preds):
        order = row.argsort(descending=True)
        assert [t["label"] for t in pred.top_k] == [predictor.classes[i] for i in order]
        assert [t["probability"] for t in pred.top_k] == [round(float(row[i]), 6) for i in order]
        assert all(type(t["probability"]) is float for t in pred.top_k)  # plain floats: JSON as they are
        assert pred.uncertain == (float(row.max()) < 0.6)
        assert pred.label == (None if pred.uncertain else predictor.classes[int(order[0])])


def test_backend_auto_takes_the_faster_of_onnx_runtime_and_pytorch_when_an_export_exists(tiny_run, tmp_path):
    import shutil

    from cnnlab.inference.export import export
    from cnnlab.inference.predictor import OnnxPredictor, Predictor

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("export"))
    plain = cnnlab.load(run, "cpu", backend="auto")
    assert type(plain) is Predictor and not hasattr(plain, "backend_choice")  # no export: PyTorch
    export(run, "onnx")
    chosen = cnnlab.load(run, "cpu", backend="auto")
    assert isinstance(chosen, (OnnxPredictor, Predictor))
    onnx_ms, torch_ms = map(float, re.findall(r"ONNX Runtime ([\d.]+) ms, PyTorch ([\d.]+) ms", chosen.backend_choice)[0])
    assert isinstance(chosen, OnnxPredictor) == (onnx_ms < torch_ms)
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    weights = run / "model.safetensors"
    with safe_open(str(weights), "pt") as f:
        metadata = f.metadata()
    state = load_file(weights)
    first = next(iter(state))
    state[first] = state[first] + 1  # trained again since: the export is stale, and auto keeps to PyTorch
    save_file(state, weights, metadata=metadata)
    assert type(cnnlab.load(run, "cpu", backend="auto")) is Predictor
