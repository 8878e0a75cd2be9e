"""The registries: one list per kind of name, that the config, --help and the builders all ask."""
import pytest
import torch

from cnnlab.catalog.augmentations import OPERATIONS, PRESETS
from cnnlab.config import NAMED, Config, with_overrides
from cnnlab.flags import commented_yaml
from cnnlab.data.samples import SAMPLES
from cnnlab.errors import ConfigError, UnknownName
from cnnlab.catalog.layers import ACTIVATIONS, POOLING
from cnnlab.catalog.loggers import LOGGERS
from cnnlab.models.registry import MODELS
from cnnlab.catalog.optim import OPTIMIZERS, SCHEDULES
from cnnlab.catalog.registry import Registry

ALL = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES, "activation": ACTIVATIONS, "pooling": POOLING,
       "preset": PRESETS, "operation": OPERATIONS, "model": MODELS, "dataset": SAMPLES, "logger": LOGGERS}
KEYS = {"optimizer": "optimizer", "schedule": "schedule", "activation": "activation", "pooling": "pool",
        "preset": "augment", "logger": "logger"}


def test_a_name_registered_twice_is_refused():
    reg = Registry("thing")
    reg.register("a")(lambda: 1)
    with pytest.raises(ValueError, match="thing 'a' is registered twice"):
        reg.register("a")(lambda: 2)
    with pytest.raises(ValueError, match="thing 'b' is registered twice"):
        reg.register("b", "b")(lambda: 3)  # an alias that repeats the name


def test_an_unknown_name_lists_the_known_ones_and_the_closest():
    reg = Registry("thing", hint="or make one")
    for name in ("alpha", "beta"):
        reg.register(name)(lambda: name)
    with pytest.raises(UnknownName) as err:
        reg.get("alpah")
    assert str(err.value) == "unknown thing 'alpah'. Did you mean 'alpha'? Known: alpha, beta (or make one)"
    assert isinstance(err.value, ConfigError)


def test_build_checks_options_against_the_signature_and_keeps_inner_type_errors():
    reg = Registry("dataset")

    @reg.register("d")
    def d(size: int = 1):
        return len(size)  # a bug inside: a TypeError that is not a bad option

    with pytest.raises(ConfigError, match="unknown option colour for dataset 'd': it takes size"):
        reg.build("d", colour=3)
    with pytest.raises(TypeError):
        reg.build("d", size=3)


@pytest.mark.parametrize("kind", sorted(ALL))
def test_every_registry_has_entries_that_build(kind):
    reg = ALL[kind]
    assert reg.names() == sorted(set(reg.names())) and reg.names()
    assert all(reg.get(n) is not None for n in reg.names())


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_the_config_accepts_exactly_the_registered_names(kind):
    reg, key = ALL[kind], KEYS[kind]
    for name in reg.names():
        with_overrides(Config(), {key: name})
    with pytest.raises(ConfigError, match=f"unknown .*'no-such'.*Known: {', '.join(reg.names())}"):
        with_overrides(Config(), {key: "no-such"})
    leaf = "preset" if kind == "preset" else key
    line = next(line for line in commented_yaml().splitlines() if line.strip().startswith(f"{leaf}:"))
    assert line.endswith(f"[{'|'.join(reg.names())}]")  # --help lists the registry's names


def test_every_registry_named_key_is_validated_by_its_registry():
    assert set(NAMED) == {"optimizer", "schedule", "pool", "activation", "preset", "logger"}
    assert {id(r) for r in NAMED.values()} == {id(ALL[k]) for k in ("optimizer", "schedule", "pooling",
                                                                      "activation", "preset", "logger")}


@pytest.mark.parametrize("name", POOLING.names())
def test_each_pooling_builds_a_layer_that_keeps_or_halves_the_size(name):
    layer = POOLING.get(name)(2, 2)
    out = layer(torch.zeros(1, 1, 8, 8))
    assert out.shape[-1] == (8 if name == "none" else 4)


def test_a_prefix_family_is_made_on_demand_and_only_registered_names_are_listed():
    made = []
    reg = Registry("thing", prefixes={"x:": lambda rest: made.append(rest) or f"made {rest}"})
    reg.register("a")(lambda: 1)
    assert reg.get("x:abc") == "made abc" and made == ["abc"]  # the prefix stripped once, by the registry
    assert reg.names() == ["a"] and "x:abc" not in reg
    with pytest.raises(UnknownName, match="unknown thing 'y:abc'"):
        reg.get("y:abc")


def test_models_build_through_the_registry_which_checks_the_options():
    with pytest.raises(ConfigError, match="unknown option colour for model 'cnn-small': it takes cfg, pre, "
                                          "num_outputs, weights"):
        MODELS.build("cnn-small", cfg=Config(), colour=3)
    cfg = with_overrides(Config(), {"model": "lenet5"})
    from cnnlab.models.registry import resolve_preprocessing

    net, report = MODELS.build("lenet5", cfg=cfg, pre=resolve_preprocessing(cfg), num_outputs=4, weights="none")
    assert report is None and net(torch.zeros(2, 1, 28, 28)).shape == (2, 4)
    assert MODELS.description("resnet18") == "ResNet-18, residual blocks (torchvision)"


@pytest.mark.parametrize("typo, names, expected", [
    ("modle", ["model", "mode", "module", "models"], ["mode", "model", "module"]),  # a transposition is one edit
    ("lrr", ["lr", "schedule"], ["lr"]),
    ("optimiser", ["optimizer", "optim.optimizer"], ["optimizer"]),
    ("zzz", ["alpha", "beta"], []),
    ("resnet5", ["resnet50", "resnet18"], ["resnet50"]),
    ("batchsz", ["batch_size", "seed"], ["batch_size"]),  # three edits: difflib's ratio finds it
])
def test_one_suggester_ranks_by_edits_then_falls_back_to_difflib(typo, names, expected):
    from cnnlab.catalog.registry import suggest

    assert suggest(typo, names) == expected
