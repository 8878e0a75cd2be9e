import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab
from cnnlab.errors import CnnlabError
from cnnlab.evaluation.features import plot_features
from cnnlab.evaluation.plots import activation_curve, activations_png


def test_activation_derivatives_match_their_formulas():
    x = torch.linspace(-3, 3, 61)
    y, dy = activation_curve("sigmoid", x)
    assert torch.allclose(dy, y * (1 - y), atol=1e-6)
    y, dy = activation_curve("tanh", x)
    assert torch.allclose(dy, 1 - y ** 2, atol=1e-6)
    _, dy = activation_curve("relu", x)
    assert torch.equal(dy, (x > 0).float())
    y, _ = activation_curve("glu", x)
    assert torch.allclose(y, x * torch.sigmoid(x), atol=1e-6)
    y, _ = activation_curve("softmax", x)
    assert torch.allclose(y, torch.sigmoid(x), atol=1e-6)  # softmax over (x, 0) is the logistic function


def test_activations_plot_has_a_panel_per_function(tmp_path):
    from cnnlab.catalog.layers import ACTIVATIONS
    from cnnlab.evaluation.plots import ACTIVATION_DPI, PANEL_INCHES, PANELS_PER_ROW

    names = ACTIVATIONS.canonical_names()
    assert {"gelu", "swish", "relu", "glu"} <= set(names) and "silu" not in names  # silu: swish's alias
    path = activations_png(tmp_path / "a.png")
    w, h = Image.open(path).size
    rows = -(-len(names) // PANELS_PER_ROW)
    assert (w, h) == (round(PANEL_INCHES[0] * PANELS_PER_ROW * ACTIVATION_DPI), round(PANEL_INCHES[1] * rows * ACTIVATION_DPI))
    pixels = np.asarray(Image.open(path).convert("L"))
    panel_h, panel_w = h // rows, w // PANELS_PER_ROW
    for i in range(len(names)):  # every panel holds a drawn curve, not a blank
        r, c = divmod(i, PANELS_PER_ROW)
        assert pixels[r * panel_h:(r + 1) * panel_h, c * panel_w:(c + 1) * panel_w].min() < 128, names[i]


def test_feature_maps_before_and_after_pooling(tiny_run, bars, tmp_path):
    predictor = cnnlab.load(tiny_run)
    paths = plot_features(predictor, sorted(bars.rglob("*.png"))[0], tmp_path)
    names = sorted(p.name for p in paths)
    assert names == ["filters.png", "maps_net_features_0_body_0_0.png", "maps_net_features_0_pool-before.png",
                     "maps_net_features_0_pool.png", "maps_net_features_1_pool-before.png", "maps_net_features_1_pool.png"]


def test_unknown_layer_lists_the_layers(tiny_run, bars, tmp_path):
    with pytest.raises(CnnlabError, match="no convolution or pooling layer 'conv9'. Layers: net.features.0.body.0.0"):
        plot_features(cnnlab.load(tiny_run), sorted(bars.rglob("*.png"))[0], tmp_path, layer="conv9")
