import urllib.error

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from cnnlab.config import load_config
from cnnlab.errors import CnnlabError
from cnnlab.models.registry import build_for_training, resolve_preprocessing


def build(weights, name="resnet18", **overrides):
    cfg = load_config(None, {"model": name, "weights": str(weights), "input_size": 32, **overrides})
    return build_for_training(cfg, resolve_preprocessing(cfg), 3)


@pytest.fixture(scope="module")
def reference_state():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).state_dict()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_weights_file_loads_the_backbone_and_skips_the_head(tmp_path, reference_state, suffix):
    path = tmp_path / f"w{suffix}"
    if suffix == ".pth":
        torch.save(reference_state, path)
    else:
        save_file({k: v.contiguous() for k, v in reference_state.items()}, str(path))
    model, report = build(path)
    assert torch.equal(model.net.features.layer4[1].conv2.weight, reference_state["layer4.1.conv2.weight"])
    assert torch.equal(model.net.features.bn1.running_mean, reference_state["bn1.running_mean"])
    assert report.skipped_head == 2 and not report.missing and not report.unexpected
    assert "classifier tensors skipped" in report.line()


def test_shape_mismatch_is_a_clear_error(tmp_path, reference_state):
    state = dict(reference_state)
    state["conv1.weight"] = torch.zeros(64, 3, 5, 5)
    torch.save(state, tmp_path / "w.pth")
    with pytest.raises(CnnlabError, match=r"'conv1.weight' has shape \(64, 3, 5, 5\) in the file"):
        build(tmp_path / "w.pth")


def test_weights_of_another_architecture(tmp_path):
    torch.save(torchvision.models.vgg11(weights=None).features.state_dict(), tmp_path / "vgg.pth")
    with pytest.raises(CnnlabError, match="none of the .* tensors .* fit resnet18"):
        build(tmp_path / "vgg.pth")


def test_loading_never_executes_code_from_the_file(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"conv1.weight": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(CnnlabError, match="is not a safe model file"):
        build(tmp_path / "evil.pth")
    assert not marker.exists()


def test_offline_imagenet_names_the_file_and_the_alternative(monkeypatch):
    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(CnnlabError, match=r"resnet18-f37072fd\.pth.*checkpoints.*--weights PATH"):
        build("imagenet")


def test_missing_weights_path():
    with pytest.raises(CnnlabError, match="weights not found"):
        build("/nope/w.pth")
