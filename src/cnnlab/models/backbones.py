"""Pretrained backbones with a replaceable head: torchvision's VGG-16, ResNets and Inception-v3,
timm's Xception, and any timm model as ``timm:<name>``.

Each entry knows its input size, normalisation and interpolation, how to cut the network into
``features`` (what transfers) and a head (what is replaced), and its blocks in order, so that
"unfreeze the top N blocks" means the same thing for every architecture.
"""
from __future__ import annotations

import functools
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from cnnlab.config import ModelConfig
from cnnlab.errors import ConfigError, UnknownName
from cnnlab.models.custom import dense_head
from cnnlab.catalog.names import Head

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataSpec:
    """What a backbone's weights expect as input, as its library states it."""

    size: int
    mean: tuple
    std: tuple
    interpolation: str


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone: where it comes from, how it splits into features and head, and its description.

    Its input size, normalisation and interpolation come from the library (``data``): torchvision's
    weights ``transforms()`` and timm's ``resolve_model_data_config``.
    """

    arch: str  # torchvision builder or timm model name
    source: str  # "torchvision" or "timm"
    weights: Optional[str]  # torchvision weights enum, e.g. "ResNet18_Weights.IMAGENET1K_V1"
    parts: Callable[[nn.Module, int], "Parts"]  # (reference model, outputs) -> features, blocks, head
    head_keys: tuple[str, ...]  # state-dict prefixes of the reference classifier: never loaded from files
    description: str
    normalize: Optional[tuple[tuple, tuple]] = None  # (mean, std) where the library's own does not apply

    @property
    def data(self) -> DataSpec:
        return _data_spec(self)


@functools.lru_cache(maxsize=None)
def _data_spec(spec: BackboneSpec) -> DataSpec:
    if spec.source == "torchvision":
        import torchvision

        t = torchvision.models.get_weight(spec.weights).transforms()
        size, mean, std, interpolation = t.crop_size[0], t.mean, t.std, t.interpolation.value
    else:
        from timm.data import resolve_model_data_config

        with torch.device("meta"):  # the model's own pretrained config, without allocating its weights
            model = create_original(spec)
        cfg = resolve_model_data_config(model)
        size, mean, std, interpolation = cfg["input_size"][-1], cfg["mean"], cfg["std"], cfg["interpolation"]
    if spec.normalize is not None:
        mean, std = spec.normalize
    return DataSpec(int(size), tuple(mean), tuple(std), str(interpolation))


def num_params(spec: BackboneSpec) -> Optional[int]:
    """The reference model's parameter count as its weights' metadata states it (torchvision), else None."""
    if spec.source != "torchvision":
        return None
    import torchvision

    return torchvision.models.get_weight(spec.weights).meta["num_params"]


class TransferNet(nn.Module):
    """``features`` (pretrained), a new ``head``, and Inception's auxiliary head during training."""

    def __init__(self, features: nn.Module, head: nn.Module, block_names: list[list[str]],
                 aux: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.features, self.head, self.aux = features, head, aux
        self.block_names = block_names

    def blocks(self) -> list[list[nn.Module]]:
        return [[self.features.get_submodule(n) for n in names] for names in self.block_names]

    def forward(self, x: torch.Tensor):
        f = self.features(x)
        out = self.head(f)
        aux_in = getattr(self.features, "aux_input", None)
        if self.training and self.aux is not None and aux_in is not None:
            return out, self.aux(aux_in)
        return out


class InceptionFeatures(nn.Module):
    """torchvision's Inception-v3 up to Mixed_7c; keeps Mixed_6e's output for the auxiliary head."""

    STEM = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3", "maxpool2"]
    MIXED = ["Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
             "Mixed_7a", "Mixed_7b", "Mixed_7c"]

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        for name in self.STEM + self.MIXED:
            setattr(self, name, getattr(model, name))
        self.aux_input: Optional[torch.Tensor] = None
        self.keep_aux_input = False  # also in eval mode (the input-size check)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.STEM + self.MIXED:
            x = getattr(self, name)(x)
            if name == "Mixed_6e":
                self.aux_input = x if (self.training or self.keep_aux_input) else None
        return x


class TimmFeatures(nn.Module):
    """Everything of a timm model but its classifier: features, pooling and any pre-logits layers."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.body = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body.forward_head(self.body.forward_features(x), pre_logits=True)


@dataclass
class Parts:
    features: nn.Module
    blocks: list[list[str]]
    num_features: int
    original_head: Optional[Callable[[int], nn.Module]] = None  # keep the original dense layers, new output
    aux: Optional[nn.Module] = None
    pooled: bool = False  # features are already pooled vectors (timm's pre-logits)


def _resnet_parts(m: nn.Module, num_outputs: int) -> Parts:
    names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    features = nn.Sequential(OrderedDict((n, getattr(m, n)) for n in names))
    blocks = [["conv1", "bn1"], ["layer1"], ["layer2"], ["layer3"], ["layer4"]]
    return Parts(features, blocks, m.fc.in_features)


def _vgg_parts(m: nn.Module, num_outputs: int) -> Parts:
    features = nn.Sequential(OrderedDict(features=m.features))
    blocks, current = [], []
    for i, layer in enumerate(m.features):
        current.append(f"features.{i}")
        if isinstance(layer, nn.MaxPool2d):
            blocks.append(current)
            current = []
    fc = m.classifier

    def original(n: int) -> nn.Module:
        # VGG's own 25088-4096-4096 layers (pretrained when the weights are), with a new output layer.
        return nn.Sequential(nn.AdaptiveAvgPool2d(7), nn.Flatten(), *list(fc.children())[:-1], nn.Linear(4096, n))

    return Parts(features, blocks, 512, original_head=original)


def _inception_parts(m: nn.Module, num_outputs: int) -> Parts:
    aux = m.AuxLogits
    aux.fc = nn.Linear(aux.fc.in_features, num_outputs)
    stem = [["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"], ["Conv2d_3b_1x1", "Conv2d_4a_3x3"]]
    blocks = stem + [[n] for n in InceptionFeatures.MIXED]
    return Parts(InceptionFeatures(m), blocks, m.fc.in_features, aux=aux)


def _timm_parts(m: nn.Module, num_outputs: int) -> Parts:
    from timm.models import group_modules

    classifier = m.pretrained_cfg.get("classifier", "fc")
    groups = group_modules(m, m.group_matcher(coarse=True))
    blocks = [[f"body.{n}" for n in names if not n.startswith(classifier)] for _, names in sorted(groups.items())]
    blocks = [b for b in blocks if b]
    num_features = getattr(m, "head_hidden_size", None) or m.num_features
    m.reset_classifier(0)
    return Parts(TimmFeatures(m), blocks, num_features, pooled=True)


def _torchvision(arch: str, weights: str, parts, head_keys: tuple[str, ...], description: str,
                 normalize=None) -> BackboneSpec:
    return BackboneSpec(arch, "torchvision", weights, parts, head_keys, description, normalize)


SPECS: dict[str, BackboneSpec] = {
    "vgg16": _torchvision("vgg16", "VGG16_Weights.IMAGENET1K_V1", _vgg_parts, ("classifier.6.",),
                          "VGG-16: 13 conv + 3 dense layers (torchvision)"),
    "resnet18": _torchvision("resnet18", "ResNet18_Weights.IMAGENET1K_V1", _resnet_parts, ("fc.",),
                             "ResNet-18, residual blocks (torchvision)"),
    "resnet34": _torchvision("resnet34", "ResNet34_Weights.IMAGENET1K_V1", _resnet_parts, ("fc.",),
                             "ResNet-34, residual blocks (torchvision)"),
    "resnet50": _torchvision("resnet50", "ResNet50_Weights.IMAGENET1K_V2", _resnet_parts, ("fc.",),
                             "ResNet-50, bottleneck blocks (torchvision)"),
    # Google's Inception weights expect (x - 0.5) / 0.5. torchvision's transforms() states ImageNet's mean
    # and std and converts inside the model (transform_input), which the feature split here bypasses: so
    # this one entry normalises to Google's convention itself (size and interpolation from the library).
    "inception_v3": _torchvision("inception_v3", "Inception_V3_Weights.IMAGENET1K_V1", _inception_parts,
                                 ("fc.", "AuxLogits.fc."), "Inception-v3 with auxiliary classifier (torchvision)",
                                 normalize=((0.5,) * 3, (0.5,) * 3)),
    "xception": BackboneSpec("legacy_xception", "timm", None, _timm_parts, ("fc.",),
                             "Xception, depthwise separable convolutions (timm)"),
}


def timm_spec(name: str) -> BackboneSpec:
    """Any timm model by its timm name (``timm:<name>`` in cnnlab's: the model registry strips the prefix)."""
    import timm

    if not timm.list_models(name):
        close = timm.list_models(f"*{name[:4]}*")[:8]
        raise UnknownName(f"unknown timm model '{name}'" + (f"; similar: {', '.join(close)}" if close else ""))
    cfg = timm.models.get_pretrained_cfg(name)
    classifier = (cfg.classifier if cfg is not None else None) or "fc"
    return BackboneSpec(name, "timm", None, _timm_parts, (f"{classifier}.",), f"timm model {name}")


def create_original(spec: BackboneSpec) -> nn.Module:
    """The reference architecture with its 1000-class classifier and random weights."""
    if spec.source == "torchvision":
        import torchvision

        kwargs = {"aux_logits": True, "transform_input": False, "init_weights": True} if spec.arch == "inception_v3" else {}
        return getattr(torchvision.models, spec.arch)(weights=None, **kwargs)
    import timm

    return timm.create_model(spec.arch, pretrained=False)


def split(spec: BackboneSpec, model: nn.Module, num_outputs: int) -> Parts:
    return spec.parts(model, num_outputs)


def assemble(name: str, parts: Parts, cfg: ModelConfig, num_outputs: int) -> TransferNet:
    head_kind = cfg.head or Head.GAP
    if head_kind == Head.FLATTEN:
        raise ConfigError(f"{name} takes a global-pooling head: --head gap (new dense layers) or --head original")
    if head_kind == Head.ORIGINAL and parts.original_head is not None:
        head = parts.original_head(num_outputs)
    else:  # global average pooling, optional dense layers with dropout, the new output layer
        head_cfg = cfg.model_copy(update={"dense": cfg.dense if cfg.dense is not None else []})
        head = dense_head(parts.num_features, head_cfg, num_outputs, Head.FLATTEN if parts.pooled else Head.GAP)
    return TransferNet(parts.features, head, parts.blocks, parts.aux)


def check_input_size(net: TransferNet, name: str, size: tuple[int, int]) -> None:
    """One forward pass on zeros, through the auxiliary head too, in eval mode (statistics untouched)."""
    keeps = hasattr(net.features, "keep_aux_input")
    try:
        with torch.no_grad():
            if keeps:
                net.features.keep_aux_input = True
            net.features.eval()(torch.zeros(1, 3, *size))
            if net.aux is not None:
                try:
                    net.aux.eval()(net.features.aux_input)
                except RuntimeError:
                    log.warning(f"{name}'s auxiliary classifier needs the full input size; "
                                f"at {size[0]}x{size[1]} it is left out of training")
                    net.aux = None
    except RuntimeError as exc:
        raise ConfigError(f"input size {size[0]}x{size[1]} is too small for {name} "
                          f"({str(exc).splitlines()[0][:120]}); use a larger --input-size") from None
    finally:
        if keeps:
            net.features.keep_aux_input, net.features.aux_input = False, None
        net.train()
