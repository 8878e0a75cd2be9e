"""The catalogue of names: each kind once, its members equal to the strings that configs and runs hold."""
import json

import pytest
import yaml

from cnnlab.errors import UnknownName
from cnnlab.catalog.names import Accelerator, Metric, Monitor, Precision, Split, Task, listed, parse


def test_a_member_is_its_string_in_comparisons_yaml_and_json():
    assert Task.REGRESSION == "regression" and "regression" == Task.REGRESSION and f"{Task.REGRESSION}" == "regression"
    assert json.dumps({"split": Split.TEST}) == '{"split": "test"}'
    assert yaml.safe_load(yaml.safe_dump({"precision": Precision.BF16_MIXED.value})) == {"precision": "bf16-mixed"}


def test_parse_gives_the_member_or_one_line_naming_every_allowed_value():
    assert parse(Accelerator, "cuda", "--accelerator") is Accelerator.CUDA
    with pytest.raises(UnknownName) as err:
        parse(Precision, "fp8", "--precision")
    assert str(err.value) == "unknown --precision 'fp8': use one of 32-true, bf16-mixed, 16-mixed"
    assert listed(Split, "|") == "auto|test|val|all"


def test_every_monitor_is_a_logged_metric():
    assert {m.value for m in Monitor} <= {m.value for m in Metric}
