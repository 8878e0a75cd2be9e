import pytest
import torch

from cnnlab.config import load_config
from cnnlab.errors import CnnlabError
from cnnlab.models.backbones import SPECS, num_params
from cnnlab.models.registry import build_model, create_model, resolve_preprocessing

# Parameter counts of the reference implementations with their 1000-class heads: torchvision's weights
# metadata states them; Xception's (timm) is the published figure.
REFERENCE = {name: num_params(spec) for name, spec in SPECS.items() if num_params(spec) is not None}
REFERENCE["xception"] = 22_855_952


def build(name, num_outputs=3, **overrides):
    cfg = load_config(None, {"model": name, "weights": "none", **overrides})
    pre = resolve_preprocessing(cfg)
    return build_model(cfg, pre, num_outputs), pre


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_original_head_has_the_reference_parameter_count(name):
    model, _ = build(name, 1000, head="original")
    assert sum(p.numel() for p in model.parameters()) == REFERENCE[name]


@pytest.mark.parametrize("name,size", [("resnet18", 32), ("vgg16", 32), ("inception_v3", 140), ("xception", 72),
                                       ("timm:mobilenetv3_small_100", 32)])
def test_new_head_for_the_datasets_classes(name, size):
    model, pre = build(name, 3, input_size=size)
    assert pre.channels == 3 and pre.size == (size, size)
    model.eval()
    out = model(torch.randint(0, 255, (2, 3, size, size), dtype=torch.uint8))
    assert out.shape == (2, 3)


def test_inception_auxiliary_head_only_in_training():
    model, _ = build("inception_v3", 4)  # 299x299: the auxiliary head needs the full size
    x = torch.randint(0, 255, (2, 3, 299, 299), dtype=torch.uint8)
    with torch.no_grad():
        main, aux = model.train()(x)
        assert main.shape == aux.shape == (2, 4)
        assert model.eval()(x).shape == (2, 4)
    small, _ = build("inception_v3", 4, input_size=140)
    assert small.net.aux is None  # too small for the auxiliary head: trained without it


def test_the_reference_counts_come_from_the_weights_metadata():
    assert REFERENCE["resnet50"] == 25_557_032 and REFERENCE["vgg16"] == 138_357_544
    assert set(REFERENCE) == set(SPECS)  # every backbone is counted


@pytest.mark.parametrize("name", sorted(SPECS))
def test_each_backbone_takes_its_preprocessing_from_its_library(name):
    import torchvision

    spec, data = SPECS[name], SPECS[name].data
    if spec.source == "torchvision":
        t = torchvision.models.get_weight(spec.weights).transforms()
        assert (data.size, data.interpolation) == (t.crop_size[0], t.interpolation.value)
        if spec.normalize is None:
            assert (list(data.mean), list(data.std)) == (list(t.mean), list(t.std))
    else:
        import timm
        from timm.data import resolve_model_data_config

        cfg = resolve_model_data_config(timm.create_model(spec.arch, pretrained=False))
        assert (data.size, data.mean, data.std, data.interpolation) == (
            cfg["input_size"][-1], tuple(cfg["mean"]), tuple(cfg["std"]), cfg["interpolation"])


def test_create_model_builds_by_name_with_overrides():
    model = create_model("resnet18", 5, input_size=64, dense=[32])
    assert model.pre.size == (64, 64) and model.pre.channels == 3
    out = model.eval()(torch.zeros(2, 3, 64, 64, dtype=torch.uint8))
    assert out.shape == (2, 5)
    assert [m.out_features for m in model.net.head if isinstance(m, torch.nn.Linear)] == [32, 5]
    small = create_model("lenet5", 10)
    assert sum(p.numel() for p in small.parameters()) == 61_706  # LeNet-5 at 28x28 (the preset applies)
    with pytest.raises(CnnlabError, match="unknown model 'resnet19'"):
        create_model("resnet19", 2)


def test_each_backbone_carries_its_preprocessing():
    cfg = load_config(None, {"model": "resnet50"})
    pre = resolve_preprocessing(cfg, probed=((28, 28), 1))  # the data does not decide for a backbone
    assert (pre.channels, pre.size, pre.interpolation) == (3, (224, 224), "bilinear")
    assert pre.mean == pytest.approx([0.485, 0.456, 0.406])
    pre = resolve_preprocessing(load_config(None, {"model": "xception"}))
    assert (pre.size, pre.interpolation, pre.mean) == ((299, 299), "bicubic", [0.5, 0.5, 0.5])


def test_vgg_original_head_keeps_the_4096_layers():
    model, _ = build("vgg16", 5, head="original", input_size=32)
    linears = [m for m in model.net.head if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [4096, 4096, 5]


def test_blocks_in_order_for_unfreezing():
    model, _ = build("resnet18", input_size=32)
    names = model.net.block_names
    assert names[-1] == ["layer4"] and len(names) == 5
    vgg, _ = build("vgg16", input_size=32)
    assert len(vgg.net.blocks()) == 5  # five conv stages, each ending in max pooling


@pytest.mark.parametrize("overrides,message", [
    ({"model": "vgg16", "input_size": 16}, "input size 16x16 is too small for vgg16"),
    ({"model": "inception_v3", "input_size": 60}, "input size 60x60 is too small for inception_v3"),
    ({"model": "resnet18", "in_channels": 1}, "takes colour input"),
    ({"model": "resnet18", "head": "flatten"}, "takes a global-pooling head"),
    ({"model": "resnet51"}, r"unknown model 'resnet51'.*timm:<name>"),
    ({"model": "timm:not_a_model_xyz"}, "unknown timm model"),
])
def test_bad_backbone_settings(overrides, message):
    with pytest.raises(CnnlabError, match=message):
        build(overrides.pop("model"), **overrides)


def test_other_input_size_warns_only_when_starting_from_pretrained_weights(caplog, tmp_path):
    """From scratch (compare --weights none) a backbone has no size of its own to depart from."""
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"")  # only its kind is asked: a file
    for given, warned in (("none", False), (str(weights), True)):
        caplog.clear()
        with caplog.at_level("WARNING", logger="cnnlab.models.registry"):
            resolve_preprocessing(load_config(None, {"model": "resnet18", "weights": given, "input_size": 32}))
        assert any("departs from" in r.message for r in caplog.records) is warned
