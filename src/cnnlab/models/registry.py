"""Model names -> builders. A model knows its own input size and normalisation."""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

from torch import nn

from cnnlab.config import Config, with_overrides
from cnnlab.errors import CnnlabError
from cnnlab.models import backbones
from cnnlab.models.backbones import BackboneSpec
from cnnlab.models.custom import PRESETS, build_custom
from cnnlab.models.families import FAMILIES, build_family
from cnnlab.models.image_model import ImageModel
from cnnlab.preprocessing import Preprocessing
from cnnlab.models.weights import LoadReport, download_imagenet, kind, load_matching, read_state_dict
from cnnlab.catalog.names import TIMM_PREFIX
from cnnlab.catalog.registry import Registry

log = logging.getLogger(__name__)

InputSpec = tuple[Optional[int], Optional[int], list[float], list[float], str]


@dataclass
class ModelEntry:
    name: str
    description: str
    input_spec: Callable[[Config], InputSpec]  # channels/size None: decided by the data
    # (config, preprocessing, outputs, weights kind) -> network with its starting weights, load report
    build: Callable[[Config, Preprocessing, int, str], tuple[nn.Module, Optional[LoadReport]]]
    default_channels: int = 3
    default_size: Union[int, Callable[[], int]] = 224  # a backbone's: asked of its library when needed
    pretrained: bool = False  # a backbone: default weights imagenet, default head gap

    @property
    def size(self) -> int:
        return self.default_size() if callable(self.default_size) else self.default_size

    def __call__(self, cfg: Config, pre: Preprocessing, num_outputs: int, weights: str):
        """The network with its starting weights (weights: none, imagenet or file) and the load report:
        what ``MODELS.build(name, ...)`` calls, after checking the options against this signature."""
        return self.build(cfg, pre, num_outputs, weights)


def _build_custom_net(cfg: Config, pre: Preprocessing, num_outputs: int, weights: str, make=build_custom):
    net = make(cfg.model, pre.channels, pre.size, num_outputs)
    report = None
    if weights == "file":
        path = Path(cfg.model.weights)
        report = load_matching(net, read_state_dict(path), str(path), cfg.model.name, ("head.",))
    return net, report


def _build_backbone_net(spec: BackboneSpec, cfg: Config, pre: Preprocessing, num_outputs: int, weights: str):
    """Reference architecture -> starting weights (into the reference layout) -> features + new head."""
    name = cfg.model.name
    original = backbones.create_original(spec)
    head_keys = spec.head_keys
    report = None
    if weights == "imagenet":
        report = download_imagenet(original, spec, name, head_keys)
    elif weights == "file":
        path = Path(cfg.model.weights)
        report = load_matching(original, read_state_dict(path), str(path), name, head_keys)
    net = backbones.assemble(name, backbones.split(spec, original, num_outputs), cfg.model, num_outputs)
    if pre.size[0] < spec.data.size or pre.size[1] < spec.data.size:
        backbones.check_input_size(net, name, pre.size)
    return net, report


def _own_input_spec(cfg: Config) -> InputSpec:
    """A network cnnlab builds itself: the data's channels and size unless the config sets them."""
    return cfg.model.in_channels, cfg.model.input_size, [0.5], [0.5], "bilinear"


def _register_presets() -> None:
    for name, preset in PRESETS.items():
        MODELS.register(name, description=preset.description)(ModelEntry(
            name=name, description=preset.description, input_spec=_own_input_spec, build=_build_custom_net,
            default_channels=preset.channels, default_size=preset.size,
        ))


def _register_families() -> None:
    """The small VGG-, ResNet-, Inception- and Xception-shaped networks (``models/families.py``)."""
    for name, (_, description) in FAMILIES.items():
        make = functools.partial(build_family, name)
        MODELS.register(name, description=description)(ModelEntry(
            name=name, description=description, input_spec=_own_input_spec,
            build=functools.partial(_build_custom_net, make=make), default_channels=1, default_size=28))


def _backbone_entry(name: str, spec: BackboneSpec) -> ModelEntry:
    def input_spec(cfg: Config) -> InputSpec:
        if cfg.model.in_channels == 1:
            raise CnnlabError(f"{name} takes colour input: leave in_channels unset (grayscale images are converted)")
        data = spec.data
        return 3, cfg.model.input_size or data.size, list(data.mean), list(data.std), data.interpolation

    return ModelEntry(name, spec.description, input_spec, functools.partial(_build_backbone_net, spec), 3,
                      lambda: spec.data.size, pretrained=True)


def _timm_entry(timm_name: str) -> ModelEntry:
    """``timm:<name>``: any timm model, made when it is asked for (the registry strips the prefix)."""
    return _backbone_entry(TIMM_PREFIX + timm_name, backbones.timm_spec(timm_name))


def _register_backbones() -> None:
    for name, spec in backbones.SPECS.items():
        MODELS.register(name, description=spec.description)(_backbone_entry(name, spec))


# The one list of model names: the presets of the custom CNN and the backbones, each entry with its input
# spec and builder; every lookup, ``timm:<name>`` included, goes through it.
MODELS: Registry = Registry("model", hint=f"or {TIMM_PREFIX}<name> for any timm model",
                            prefixes={TIMM_PREFIX: _timm_entry})
_register_presets()
_register_families()
_register_backbones()


def get_entry(name: str) -> ModelEntry:
    return MODELS.get(name)


def names() -> list[str]:
    return MODELS.names()


def resolve_preprocessing(cfg: Config, probed: Optional[tuple[tuple[int, int], int]] = None,
                          weights: Optional[str] = None) -> Preprocessing:
    """The config's explicit values first, then the model's own, then what the data looks like (``weights``:
    the weights kind, when the caller has it)."""
    entry = get_entry(cfg.model.name)
    channels, side, mean, std, interpolation = entry.input_spec(cfg)
    if channels is None:
        channels = probed[1] if probed else entry.default_channels
    size = (side, side) if side else (probed[0] if probed else (entry.size, entry.size))
    if entry.pretrained and side != entry.size and (weights or weights_kind(cfg)) != "none":  # scratch: any size
        log.warning(f"input size {side} departs from {cfg.model.name}'s pretrained "
                    f"{entry.size}; pretrained features work best at their own size")
    return Preprocessing(channels=channels, size=size, mean=mean, std=std, interpolation=interpolation)


def resolve_model_config(cfg: Config) -> Config:
    """The config with every model choice made explicit (preset values, default head), so that the copy
    written into a run directory rebuilds exactly the same architecture."""
    entry = get_entry(cfg.model.name)
    if entry.pretrained:
        model = cfg.model.model_copy(update={"head": cfg.model.head or "gap",
                                             "dense": cfg.model.dense if cfg.model.dense is not None else []})
    elif cfg.model.name in FAMILIES:  # its name is its whole architecture
        return cfg
    else:
        from cnnlab.models.custom import effective_config

        model = effective_config(cfg.model)
    return cfg.model_copy(update={"model": model})


def build_model(cfg: Config, pre: Preprocessing, num_outputs: int) -> ImageModel:
    """The architecture with random weights (prediction loads the run's own weights into it)."""
    net, _ = MODELS.build(cfg.model.name, cfg=cfg, pre=pre, num_outputs=num_outputs, weights="none")
    return ImageModel(net, pre)


def build_for_training(cfg: Config, pre: Preprocessing, num_outputs: int,
                       weights: Optional[str] = None) -> tuple[ImageModel, Optional[LoadReport]]:
    """The architecture with its starting weights: ImageNet, a file, or none (``weights``: the weights kind, when
    the caller has it). A previous run's weights are loaded by the training layer, which reads run
    directories: ``cnnlab.training.source_run``."""
    weights = weights or weights_kind(cfg)
    net, report = MODELS.build(cfg.model.name, cfg=cfg, pre=pre, num_outputs=num_outputs,
                               weights="none" if weights == "run" else weights)
    return ImageModel(net, pre), report


def create_model(name: str, num_outputs: int, config: Optional[Config] = None, **overrides) -> ImageModel:
    """A model by name, ready to train or inspect: ``cnnlab.create_model("resnet18", 10, input_size=64)``.

    ``overrides`` are config keys (``activation``, ``dense``, ``head``, ``weights`` ...) on top of ``config``
    (default: the defaults). Starting weights default to none, as timm's ``pretrained=False``: pass
    ``weights="imagenet"`` or a file for pretrained ones. The model carries its preprocessing (``model.pre``).
    """
    overrides.setdefault("weights", (config.model.weights if config is not None else None) or "none")
    cfg = resolve_model_config(with_overrides(config or Config(), {"model": name, **overrides}))
    model, _ = build_for_training(cfg, resolve_preprocessing(cfg), num_outputs)
    return model


def weights_kind(cfg: Config) -> str:
    entry = get_entry(cfg.model.name)
    return kind(cfg.model.weights if cfg.model.weights is not None else ("imagenet" if entry.pretrained else "none"))
