"""models/families.py: the small VGG-, ResNet-, Inception- and Xception-shaped networks of the model registry:
matched in size, each built from its family's own unit, and trainable like any cnnlab model."""
import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.config import load_config
from cnnlab.errors import ConfigError
from cnnlab.models.families import FAMILIES, InceptionBlock
from cnnlab.models.registry import MODELS, create_model, resolve_model_config


def _net(name: str, channels: int = 1, side: int = 28) -> nn.Module:
    return create_model(name, 10, in_channels=channels, input_size=side).net


def _params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_the_four_families_are_in_the_registry_with_their_parameter_counts_within_10_percent():
    assert set(FAMILIES) == {"vgg-small", "resnet-small", "inception-small", "xception-small"} <= set(MODELS.names())
    counts = {name: _params(_net(name)) for name in FAMILIES}
    # torch's counts at 1x28x28 and 10 classes (the widths were chosen for them); families.py quotes them
    assert counts == {"vgg-small": 25_498, "resnet-small": 26_298, "inception-small": 24_378, "xception-small": 26_154}
    assert max(counts.values()) / min(counts.values()) < 1.10


def _convs(net: nn.Module) -> list[nn.Conv2d]:
    return [m for m in net.modules() if isinstance(m, nn.Conv2d)]


def test_each_family_is_built_from_its_own_unit():
    from timm.models.xception import Block, SeparableConv2d
    from torchvision.models.resnet import BasicBlock

    vgg, resnet, inception, xception = (_net(n) for n in FAMILIES)
    assert {c.kernel_size for c in _convs(vgg)} == {(3, 3)} and len(_convs(vgg)) == 5  # stem + two stages of two
    assert sum(isinstance(m, BasicBlock) for m in resnet.modules()) == 2
    blocks = [m for m in inception.modules() if isinstance(m, InceptionBlock)]
    assert len(blocks) == 2 and all(len(b.branches) == 4 for b in blocks)
    assert {(3, 1), (1, 3)} <= {c.kernel_size for c in _convs(inception)}  # the factorised 3x3
    depthwise = [c for c in _convs(xception) if c.groups > 1]
    assert sum(isinstance(m, Block) for m in xception.modules()) == 2
    assert len(depthwise) == sum(isinstance(m, SeparableConv2d) for m in xception.modules()) == 4
    assert all(c.groups == c.in_channels == c.out_channels for c in depthwise)


@pytest.mark.parametrize("name", sorted(FAMILIES))
@pytest.mark.parametrize("channels,side", [(1, 28), (3, 16), (1, 14)])
def test_every_family_gives_one_logit_per_class_at_any_size_that_survives_two_halvings(name, channels, side):
    net = _net(name, channels, side).eval()
    with torch.no_grad():
        assert net(torch.rand(2, channels, side, side)).shape == (2, 10)
    assert [len(stage) for stage in net.blocks()] == [1, 1, 1]  # stem and two stages: what fine-tuning unfreezes


def test_too_small_an_input_is_a_config_error_that_says_what_to_do():
    with pytest.raises(ConfigError, match="too small for vgg-small.*input_size 4 or more"):
        _net("vgg-small", 1, 3)


def test_a_family_config_is_kept_as_given_its_architecture_is_its_name():
    cfg = load_config(overrides={"model": "resnet-small"})
    assert resolve_model_config(cfg) == cfg


def test_a_family_trains_and_reloads_through_the_ordinary_path(tmp_path, bars):
    result = cnnlab.train(bars, tmp_path / "run", model="xception-small", epochs=1, input_size=16, progress=False,
                          val_split=0.0)
    from timm.models.xception import Block

    predictor = cnnlab.load(result.run_dir, "cpu")
    assert isinstance(predictor.model.net.features[1], Block)
    assert predictor.classes == ["a", "b", "c"]
    assert _params(predictor.model.net) == _params(create_model("xception-small", 3, in_channels=3, input_size=16).net)
