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
    path = activations_png(tmp_path / "a.png")
    w, h = Image.open(path).size
    assert w > 1000 and h > 600


def test_feature_maps_before_and_after_pooling(tiny_run, bars, tmp_path):
    predictor = cnnlab.load(tiny_run)
    paths = plot_features(predictor, sorted(bars.rglob("*.png"))[0], tmp_path)
    names = sorted(p.name for p in paths)
    assert names == ["filters.png", "maps_net_features_0_body_0_0.png", "maps_net_features_0_pool-before.png",
                     "maps_net_features_0_pool.png", "maps_net_features_1_pool-before.png", "maps_net_features_1_pool.png"]


def test_unknown_layer_lists_the_layers(tiny_run, bars, tmp_path):
    with pytest.raises(CnnlabError, match="no convolution or pooling layer 'conv9'. Layers: net.features.0.body.0.0"):
        plot_features(cnnlab.load(tiny_run), sorted(bars.rglob("*.png"))[0], tmp_path, layer="conv9")
