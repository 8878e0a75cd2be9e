"""A person's own experiment as YAML: arms as config overrides, a measurement and the expected direction.

    name: dropout-here
    question: Does dropout lower the validation loss on my data?
    data: mnist-5k              # any dataset cnnlab trains on (default mnist-5k)
    seeds: 5                    # paired across arms
    settings: {epochs: 5}       # for every arm
    arms:
      none: {dropout: 0.0}
      half: {dropout: 0.5}
    measure: val_loss           # a metrics.csv column (its last epoch; NAME@1: the first), seconds,
                                # images_per_second, or test_accuracy / test_f1_macro (evaluated)
    expect: half < none         # arm op arm, or arm op number
    by: 0.0                     # the margin the claim needs (a factor with scale: log)

It runs through the same engine as the built-in experiments: the same pairing, statistics and page.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cnnlab.config import with_overrides
from cnnlab.errors import ConfigError
from cnnlab.experiments.spec import Arm, Budget, Check, Experiment, Plot, Source

EXPECT = re.compile(r"^\s*(\S+)\s*([<>])\s*(\S+)\s*$")


class _SourceModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    paper: str = "your hypothesis"
    where: str = ""
    number: str = ""


class UserExperiment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    question: str = ""
    claim: str = ""
    source: _SourceModel = Field(default_factory=_SourceModel)
    data: str = "mnist-5k"
    seeds: int = Field(3, ge=1)
    quick_seeds: int = Field(2, ge=1)
    settings: dict = Field(default_factory=dict)
    quick_settings: dict = Field(default_factory=dict)
    arms: dict[str, dict] = Field(min_length=2)
    measure: str
    expect: str
    by: float = Field(0.0, ge=0.0)
    scale: Literal["linear", "log"] = "linear"
    evaluate: Optional[bool] = None


def _check(spec: UserExperiment) -> Check:
    match = EXPECT.match(spec.expect)
    if not match:
        raise ConfigError(f"expect '{spec.expect}' must read 'ARM < ARM', 'ARM > ARM' or 'ARM < NUMBER'")
    left, op, right = match.groups()
    for arm in [left] + ([right] if right in spec.arms else []):
        if arm not in spec.arms:
            raise ConfigError(f"expect names arm '{arm}', which is not one of the arms: {', '.join(spec.arms)}")
    other, value = (right, None) if right in spec.arms else (None, _number(right, spec.arms))
    claim = spec.claim or f"{left}'s {spec.measure} {op} {right}'s."
    return Check(claim, Source(spec.source.paper, spec.source.where, spec.source.number), spec.measure, left, op,
                 other=other, value=value, by=spec.by, scale=spec.scale)


def _number(text: str, arms) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"expect compares with '{text}', which is neither an arm ({', '.join(arms)}) nor a number") \
            from None


def to_experiment(spec: UserExperiment) -> Experiment:
    for name, overrides in spec.arms.items():  # every arm's config is valid before anything runs
        try:
            with_overrides({}, {**spec.settings, **overrides})
        except ConfigError as exc:
            raise ConfigError(f"arm '{name}': {exc}") from None
    arms = tuple(Arm(name, overrides=dict(o)) for name, o in spec.arms.items())
    evaluate = spec.evaluate if spec.evaluate is not None else spec.measure.startswith("test_")
    curve = spec.measure.split("@")[0]
    return Experiment(
        name=spec.name, question=spec.question or f"Is {spec.expect} on {spec.measure}?", arms=arms,
        checks=(_check(spec),), evaluate=evaluate,
        quick=Budget(spec.quick_seeds, spec.data, {**spec.settings, **spec.quick_settings}),
        full=Budget(spec.seeds, spec.data, dict(spec.settings)),
        plots=(Plot(curve, "epoch"),) if not curve.startswith("test_") else (),
        scale_note="A user's experiment: the verdict holds for this data, these settings and these seeds.")


def load_yaml(path: str | Path) -> Experiment:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"experiment file not found: {path}")
    try:
        tree = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"experiment file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"experiment file {path} must hold a mapping (name, arms, measure, expect)")
    try:
        spec = UserExperiment.model_validate(tree)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "the file"
        raise ConfigError(f"experiment file {path}: '{where}': {err['msg']}") from None
    return to_experiment(spec)
