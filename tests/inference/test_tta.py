"""Test-time augmentation: only the views the run trained with, and the mean of their softmax."""
from __future__ import annotations

import json

import pytest
import torch

import cnnlab
from cnnlab import rundir
from cnnlab.config import AugmentConfig
from cnnlab.inference.tta import views
from conftest import TINY, invoke


@pytest.fixture(scope="module")
def light_run(tmp_path_factory, bars):
    """Trained with the light preset (shifts, rotations and zoom; no flips): the default from scratch."""
    out = tmp_path_factory.mktemp("tta") / "run"
    cnnlab.train(bars, out, epochs=3, lr=0.01, batch_size=16, **{**TINY, "augment": "light"})
    return out


def names(**augment) -> list[str]:
    return [name for name, _ in views(AugmentConfig(**augment))]


def test_views_follow_the_runs_augmentation():
    assert names(preset="none") == ["original"]
    assert names(preset="light") == ["original", "shift+", "shift-", "zoom"]  # digits: no flips
    assert "hflip" in names(preset="standard") and "vflip" not in names(preset="standard")
    assert names(preset="none", vflip=0.5) == ["original", "vflip"]


def test_a_view_is_the_transform_it_names():
    x = torch.arange(2 * 1 * 8 * 8, dtype=torch.uint8).reshape(2, 1, 8, 8)
    by_name = dict(views(AugmentConfig(preset="standard")))
    assert torch.equal(by_name["hflip"](x), x.flip(-1))
    shifted = by_name["shift+"](x)  # translate 0.1 x 0.5 of 8 px: 0 px after rounding; 0.4 rounds to 0
    assert shifted.shape == x.shape and shifted.dtype == torch.uint8
    wide = dict(views(AugmentConfig(preset="none", translate=0.5)))
    assert torch.equal(wide["shift+"](x)[..., 2:, 2:], x[..., :-2, :-2])  # 0.25 x 8 = 2 px right and down


def test_tta_predictions_are_the_mean_of_the_views_softmax(light_run, bars):
    tiny_run = light_run
    plain = cnnlab.load(tiny_run, "cpu")
    tta = cnnlab.load(tiny_run, "cpu", tta=True)
    assert [n for n, _ in tta.views] == ["original", "shift+", "shift-", "zoom"]  # light: no flips
    x = torch.stack([plain.preprocess(p) for p in sorted(bars.rglob("*.png"))[:6]])
    t = plain.temperature
    expected = torch.stack([(plain.raw(x if v is None or n == "original" else v(x)) / t).softmax(1)
                            for n, v in tta.views]).mean(0)
    assert torch.allclose(tta.forward(x), expected, atol=1e-6)
    assert not torch.allclose(tta.forward(x).log(), plain.forward(x).log(), atol=1e-3)  # the views do differ


def test_evaluate_tta_writes_beside_the_headline(light_run, bars):
    tiny_run = light_run
    headline = rundir.evaluation_path(tiny_run)
    proc = invoke("evaluate", tiny_run, bars, "--tta")
    assert proc.returncode == 0, proc.stderr
    assert "test-time augmentation: the mean over original, shift+, shift-, zoom" in proc.stdout
    written = tiny_run / "evaluations" / f"{bars.name}-tta.json"  # its held-out test images
    result = json.loads(written.read_text())
    assert result["tta"] == ["original", "shift+", "shift-", "zoom"] and result["calibration"]["ece_before"] is None
    if headline.is_file():
        assert json.loads(headline.read_text()).get("tta") is None
