import pytest

from cnnlab.config import Config, load_config, parse_value
from cnnlab.errors import CnnlabError


def test_defaults_are_valid_and_round_trip_through_yaml(tmp_path):
    cfg = Config()
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml())
    assert load_config(path) == cfg


def test_flag_names_reach_their_section():
    cfg = load_config(None, {"lr": 0.05, "model": "lenet5", "optim.schedule": "cosine", "batch-size": 8})
    assert cfg.optim.lr == 0.05
    assert cfg.model.name == "lenet5"
    assert cfg.optim.schedule == "cosine"
    assert cfg.data.batch_size == 8


def test_flag_overrides_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 0.1\ntrain:\n  epochs: 4\n")
    cfg = load_config(path, {"epochs": 2})
    assert (cfg.optim.lr, cfg.train.epochs) == (0.1, 2)


def test_unknown_flag_suggests_a_few_close_flags_not_the_whole_list():
    with pytest.raises(CnnlabError, match=r"unknown flag '--lrr'.*Did you mean --lr\b") as err:
        load_config(None, {"lrr": 0.1})
    assert "optim.schedule" not in str(err.value) and str(err.value).count("--") <= 4
    for typo, flag in (("modle", "--model"), ("optimiser", "--optimizer"), ("early_stoping", "--early-stopping"),
                       ("batchsize", "--batch-size")):
        with pytest.raises(CnnlabError) as err:
            load_config(None, {typo: 1})
        suggested = str(err.value).split("Did you mean")[1].split("?")[0]
        assert flag in suggested.replace(",", " ").split(), (typo, str(err.value))
        assert suggested.count("--") <= 3


def test_an_invalid_value_names_the_key_not_the_type_pydantic_tried():
    with pytest.raises(CnnlabError) as err:
        load_config(None, {"lr": "abc"})
    assert "'optim.lr'" in str(err.value) and "optim.lr.float" not in str(err.value)
    with pytest.raises(CnnlabError, match=r"'model\.blocks\.0\.filters'"):
        load_config(None, {"blocks": [{"filters": "many"}]})


def test_unknown_yaml_key_is_an_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  learning_rate: 0.1\n")
    with pytest.raises(CnnlabError, match="unknown config key 'optim.learning_rate'"):
        load_config(path)


def test_invalid_value_names_key_value_and_rule():
    with pytest.raises(CnnlabError, match=r"invalid value for 'optim.lr': -1"):
        load_config(None, {"lr": -1})
    with pytest.raises(CnnlabError, match=r"'train.mode'.*'sgd'"):
        load_config(None, {"mode": "sgd"})


def test_blocks_declared_in_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  name: cnn\n  blocks:\n    - {filters: 8, kernel: 5}\n    - {filters: 16, repeat: 2, pool: avg}\n")
    cfg = load_config(path)
    assert [b.filters for b in cfg.model.blocks] == [8, 16]
    assert cfg.model.blocks[1].repeat == 2 and cfg.model.blocks[1].pool == "avg"


def test_parse_value_reads_yaml_scalars_and_comma_lists():
    assert parse_value("0.01") == 0.01
    assert parse_value("true") is True
    assert parse_value("256,128") == [256, 128]
    assert parse_value("[1, 2]") == [1, 2]
    assert parse_value("adam") == "adam"
