import pytest
import torch

from cnnlab.config import load_config
from cnnlab.errors import CnnlabError
from cnnlab.catalog.layers import ACTIVATIONS
from cnnlab.models.registry import build_model, resolve_preprocessing

COURSE = ["relu", "sigmoid", "tanh", "softmax", "leaky_relu", "prelu", "elu", "swish", "glu"]


def test_registry_has_every_activation_of_the_course():
    assert set(COURSE) <= set(ACTIVATIONS.names())


@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_cnn_builds_trains_with_each_activation(name):
    cfg = load_config(None, {"activation": name, "input_size": 12, "in_channels": 3, "dense": [8],
                             "blocks": [{"filters": 4}, {"filters": 6}]})
    model = build_model(cfg, resolve_preprocessing(cfg), 5)
    x = torch.randint(0, 255, (2, 3, 12, 12), dtype=torch.uint8)
    out = model(x)
    assert out.shape == (2, 5)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_glu_gets_twice_the_width_and_halves_it():
    cfg = load_config(None, {"activation": "glu", "input_size": 8, "in_channels": 1, "dense": [8], "blocks": [{"filters": 4}]})
    net = build_model(cfg, resolve_preprocessing(cfg), 3).net
    conv = net.features[0].body[0][0]
    assert conv.out_channels == 8  # 2 x 4 filters: GLU gates one half with the other
    assert net.features(torch.zeros(1, 1, 8, 8)).shape[1] == 4


def test_prelu_learns_one_slope_per_channel():
    cfg = load_config(None, {"activation": "prelu", "input_size": 8, "in_channels": 1, "blocks": [{"filters": 6}]})
    net = build_model(cfg, resolve_preprocessing(cfg), 3).net
    assert net.features[0].body[0][2].weight.numel() == 6


def test_unknown_activation_lists_the_known_ones():
    with pytest.raises(CnnlabError, match="unknown activation 'relu6'.*Known: .*leaky_relu"):
        load_config(None, {"activation": "relu6"})  # the config asks the registry: before anything is built
