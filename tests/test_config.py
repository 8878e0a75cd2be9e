import pytest

from cnnlab.config import Config, load_config
from cnnlab.flags import parse_value
from cnnlab.errors import CnnlabError, ConfigError
from cnnlab.catalog.names import Head, Precision, Task


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


@pytest.mark.parametrize("overrides, says", [
    ({"precision": "bogus"}, "unknown --precision 'bogus': use one of 32-true, bf16-mixed, 16-mixed"),
    ({"accelerator": "tpu"}, "unknown --accelerator 'tpu': use one of auto, cpu, gpu, cuda"),
    ({"distributed": "dpp"}, "unknown --distributed strategy 'dpp': use one of auto, ddp"),
    ({"monitor": "val_f1"}, "unknown --monitor 'val_f1': use one of val_loss, val_acc, train_loss"),
    ({"head": "dense"}, "unknown --head 'dense': use one of flatten, gap, original"),
    ({"task": "segmentation"}, "unknown --task 'segmentation': use one of classification, regression"),
    ({"devices": "many"}, "--devices must be a number or auto, got 'many'"),
    ({"devices": True}, "--devices must be a number or auto, got 'True'"),
])
def test_a_catalogue_name_is_checked_when_the_config_loads_not_at_train_time(overrides, says):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=overrides)
    assert str(err.value) == says


def test_catalogue_names_load_as_their_members_and_write_back_as_plain_strings(tmp_path):
    cfg = load_config(overrides={"precision": "bf16-mixed", "accelerator": "cpu", "devices": "2", "task": "regression",
                                 "head": "gap", "monitor": "train_loss"})
    assert (cfg.train.precision, cfg.train.accelerator, cfg.train.devices) == (Precision.BF16_MIXED, "cpu", 2)
    assert cfg.task == Task.REGRESSION and cfg.model.head == Head.GAP
    # plain strings, not the enum's members: a checkpoint (torch weights_only) can hold them
    assert {type(v) for v in (cfg.task, cfg.model.head, cfg.train.precision, cfg.train.monitor)} == {str}
    text = cfg.to_yaml()
    assert "precision: bf16-mixed\n" in text and "task: regression\n" in text and "!!python" not in text
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert load_config(path) == cfg


def test_every_default_is_plain_data():
    """A config's values go into checkpoints, which torch loads weights_only: no cnnlab class may be among them."""
    def leaves(node):
        for value in node.values():
            yield from leaves(value) if isinstance(value, dict) else [value]

    tree = Config().model_dump()
    assert all(v is None or type(v) in (str, int, float, bool, list) for v in leaves(tree)), tree
