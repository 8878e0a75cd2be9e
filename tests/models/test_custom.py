import pytest
import torch

from cnnlab.config import load_config
from cnnlab.errors import CnnlabError
from cnnlab.models.registry import build_model, resolve_preprocessing
from cnnlab.models.summary import summarize


def build(num_outputs=10, **overrides):
    cfg = load_config(None, overrides)
    pre = resolve_preprocessing(cfg)
    return build_model(cfg, pre, num_outputs), pre


def test_default_model_shapes_and_parameter_count():
    model, pre = build()
    assert (pre.channels, pre.size) == (1, (28, 28))
    s = summarize(model, (1, 28, 28))
    shapes = {r.name: r.output_shape for r in s.rows}
    assert shapes["net.features.0.pool"] == (1, 32, 14, 14)
    assert shapes["net.features.1.pool"] == (1, 64, 7, 7)
    # conv 1->32 (3x3, no bias) + BN, conv 32->64 + BN, dense 3136->128, output 128->10
    expected = 9 * 32 + 64 + 9 * 32 * 64 + 128 + 3136 * 128 + 128 + 128 * 10 + 10
    assert s.total == expected == sum(p.numel() for p in model.parameters())


def test_lenet5_matches_the_classic_parameter_count():
    model, _ = build(model="lenet5")
    # LeNet-5 with 'same' first conv on 28x28: 156 + 2,416 + 48,120 + 10,164 + 850 = 61,706
    assert sum(p.numel() for p in model.parameters()) == 61706
    assert isinstance(model.net.features[0].pool, torch.nn.AvgPool2d)


def test_regression_output_is_one_linear_value():
    model, _ = build(num_outputs=1)
    assert isinstance(model.net.head[-1], torch.nn.Linear) and model.net.head[-1].out_features == 1


def test_residual_blocks_add_a_shortcut():
    model, _ = build(residual=True, blocks=[{"filters": 8, "repeat": 2}, {"filters": 8, "repeat": 2}], head="gap")
    stage = model.net.features[1]
    assert isinstance(stage.shortcut, torch.nn.Identity)
    assert isinstance(model.net.features[0].shortcut, torch.nn.Conv2d)  # 1 -> 8 channels needs a projection
    # With the body's contribution zeroed, a residual stage passes its input through (then pools).
    for p in stage.body.parameters():
        torch.nn.init.zeros_(p)
    x = torch.rand(1, 8, 6, 6)
    stage.eval()
    assert torch.allclose(stage(x), torch.nn.functional.max_pool2d(x + stage.body(x), 2))


def test_average_pooling_and_global_pooling_head():
    model, _ = build(pool="avg", head="gap")
    assert isinstance(model.net.features[0].pool, torch.nn.AvgPool2d)
    assert isinstance(model.net.head[0], torch.nn.AdaptiveAvgPool2d)


def test_too_small_input_is_a_clear_error():
    with pytest.raises(CnnlabError, match="input size 2x2 is too small"):
        build(input_size=2)


def test_cnn_without_blocks_says_how_to_declare_them():
    with pytest.raises(CnnlabError, match="needs model.blocks"):
        build(model="cnn")


def test_unknown_model_lists_names():
    with pytest.raises(CnnlabError, match="unknown model 'cnn-smal'.*Did you mean 'cnn-small'.*Known:"):
        build(model="cnn-smal")


def test_uint8_input_is_normalised_inside_the_model():
    model, pre = build()
    model.eval()
    x = torch.full((1, 1, 28, 28), 255, dtype=torch.uint8)
    assert torch.allclose(model.normalize(x), torch.ones(1, 1, 28, 28))  # (1 - 0.5) / 0.5
    assert torch.allclose(model(x), model(x.float() / 255))
