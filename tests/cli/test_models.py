"""cli/models.py: models, summary and config: what they list, the options summary hands to the model builder,
and the figures it prints."""
import pytest
import yaml

import cnnlab.models.registry as registry
from cnnlab.models.registry import MODELS


def test_models_lists_every_registered_model_with_its_input(cli):
    found = cli("models")
    assert found.code == 0
    for name in MODELS.names():
        entry = MODELS.get(name)
        line = next(line for line in found.out.splitlines() if f"│ {name} " in line)
        assert f"{entry.default_channels}x{entry.size}x{entry.size}" in line, line


@pytest.fixture
def builder(monkeypatch):
    """create_model, recording the arguments summary gives it (the real one builds: lenet5 is small)."""
    calls, real = [], registry.create_model

    def create_model(name, num_outputs, config=None, **overrides):
        calls.append((name, num_outputs, overrides))
        kept = overrides if name == "lenet5" else {"weights": "none"}  # a backbone's options: not lenet5's
        return real("lenet5", num_outputs, config, **kept)

    monkeypatch.setattr(registry, "create_model", create_model)
    return calls


def _params(found) -> tuple[int, int, int]:
    line = next(line for line in found.out.splitlines() if line.startswith("total params:"))
    total, trainable, frozen = (int(word.replace(",", "")) for word in line.split() if word[0].isdigit())
    return total, trainable, frozen


def test_summary_of_a_preset_passes_size_channels_and_classes(cli, builder):
    found = cli("summary", "lenet5", "--input-size", "28", "--channels", "1", "--classes", "5")
    assert found.code == 0, found.err
    assert builder == [("lenet5", 5, {"weights": "none", "input_size": 28, "in_channels": 1})]
    assert "lenet5: input 1x28x28" in found.out
    net = registry.create_model("lenet5", 5, input_size=28, in_channels=1)
    assert _params(found) == (sum(p.numel() for p in net.parameters()),) * 2 + (0,)


def test_summary_of_lenet5_counts_the_reference_parameters(cli):
    found = cli("summary", "lenet5")
    assert found.code == 0 and _params(found) == (61706, 61706, 0)  # LeCun et al. 1998, 10 classes


def test_summary_of_a_backbone_uses_its_own_classifier_and_1000_classes(cli, builder):
    backbone = next(n for n in MODELS.names() if MODELS.get(n).pretrained)
    cli("summary", backbone)
    assert builder[0] == (backbone, 1000, {"weights": "none", "head": "original"})  # no weights: nothing downloaded


def test_summary_head_flag_reaches_the_builder(cli, builder):
    cli("summary", "lenet5", "--head", "gap")
    assert builder == [("lenet5", 10, {"weights": "none", "head": "gap"})]


def test_summary_names_an_unknown_model_in_one_line(cli):
    found = cli("summary", "vgg99")
    assert found.code == 2 and len(found.err_lines) == 1 and "unknown model 'vgg99'" in found.err


def test_summary_of_a_run_reads_the_run(cli, tiny_run):
    from cnnlab.rundir import Run

    found = cli("summary", tiny_run)
    assert found.code == 0, found.err
    net = Run.open(tiny_run).load_model()
    assert f"{tiny_run.name}: input 3x16x16" in " ".join(found.out.split())
    assert _params(found)[0] == sum(p.numel() for p in net.parameters())
    assert " ".join(found.out.splitlines()[-1].split()) == "augmentation: none strategy: full weights: none"


def test_config_prints_the_defaults_as_yaml_with_every_key_explained(cli):
    from cnnlab.config import Config
    from cnnlab.flags import key_docs

    found = cli("config")
    assert found.code == 0
    assert yaml.safe_load(found.out) == Config().model_dump(mode="json")
    lines = [line for line in found.out.splitlines() if line]
    keyed = [line for line in lines if " # " in line]
    assert len(keyed) == len(key_docs()) and all(line.endswith("]") for line in keyed)  # [allowed values]
    assert all(line.endswith(":") and not line.startswith(" ") for line in lines if line not in keyed)  # sections
