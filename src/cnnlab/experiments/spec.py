"""What an experiment is: a declaration (question, claims with their sources, arms, checks, budgets), not a script.

The engine (``engine.py``) runs any ``Experiment``; the built-in ones and a user's YAML file are the same data.
Nothing here imports torch, so listing experiments is instant.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

Scale = Literal["linear", "log"]


@dataclass(frozen=True)
class Source:
    """Where a claim was published, and the number it gives (quoted beside the measured one)."""

    paper: str  # "Krizhevsky et al. 2012"
    where: str = ""  # "Figure 1", "§4.2, Table 1"
    number: str = ""  # "ReLU reaches 25% training error on CIFAR-10 6x sooner than tanh"

    def cite(self) -> str:
        return f"{self.paper}{', ' + self.where if self.where else ''}"


@dataclass(frozen=True)
class Arm:
    """One setting. A training arm is config overrides for an ordinary ``cnnlab.train`` run; a probe arm
    calls ``probe`` ("module:function") to measure a network directly, without a training run."""

    name: str
    overrides: dict = field(default_factory=dict)
    probe: Optional[str] = None
    params: dict = field(default_factory=dict)
    label: str = ""

    @property
    def kind(self) -> str:
        return "probe" if self.probe else "train"

    def title(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class Check:
    """One testable claim: ``metric`` of ``arm`` is ``op`` (< or >) that of ``other`` (paired by seed) or
    ``value``, by at least ``by`` (a difference on the linear scale, a factor on the log scale).

    ``exact`` checks are arithmetic (every seed must hold: no interval is needed); the others are decided
    by the bootstrap interval of the paired differences (``stats.py``)."""

    claim: str
    source: Source
    metric: str
    arm: str
    op: Literal["<", ">"]
    other: Optional[str] = None
    value: Optional[float] = None
    by: float = 0.0
    scale: Scale = "linear"
    exact: bool = False

    def __post_init__(self) -> None:
        if (self.other is None) == (self.value is None):
            raise ValueError(f"check '{self.claim}': compare with another arm or with a value, not both or neither")
        if self.scale == "log" and self.by and self.by < 1:
            raise ValueError(f"check '{self.claim}': on the log scale 'by' is a factor >= 1")

    def expectation(self) -> str:
        other = self.other if self.other is not None else f"{self.value:g}"
        if not self.by:
            return f"{self.arm}'s {self.metric} {self.op} {other}'s" if self.other else \
                f"{self.arm}'s {self.metric} {self.op} {other}"
        if self.by < 0 and self.scale == "linear":  # a tolerance: "no more than |by| on the wrong side"
            side = "above" if self.op == "<" else "below"
            return f"{self.arm}'s {self.metric} no more than {-self.by:g} {side} {other}{chr(39) + 's' if self.other else ''}"
        how = f"{self.by:g}x" if self.scale == "log" else f"{self.by:g}"
        side = "below" if self.op == "<" else "above"
        return f"{self.arm}'s {self.metric} at least {how} {side} {other}{chr(39) + 's' if self.other else ''}"


@dataclass(frozen=True)
class Budget:
    """Seeds, dataset and the settings every arm shares in one mode (quick or full)."""

    seeds: int
    data: str  # a built-in dataset name or a folder
    overrides: dict = field(default_factory=dict)  # for every training arm (epochs, model ...)
    params: dict = field(default_factory=dict)  # for every probe arm (steps, width ...)


@dataclass(frozen=True)
class Plot:
    """A figure on the page: ``metric`` against ``x`` ("epoch", "step", "second" for training curves, or a
    probe's own axis), one line per arm with a band over the seeds."""

    metric: str
    x: str = "epoch"
    title: str = ""
    log_y: bool = False


@dataclass(frozen=True)
class Experiment:
    name: str
    question: str
    arms: tuple[Arm, ...]
    checks: tuple[Check, ...]  # the first is the headline
    quick: Budget
    full: Budget
    scale_note: str = ""  # what the scaled-down setting can and cannot show
    reported: tuple[str, ...] = ()  # metrics shown per arm but not asserted ("do not claim" notes)
    plots: tuple[Plot, ...] = ()
    timings: tuple[str, ...] = ()  # metrics that measure time: they differ between identical runs
    evaluate: bool = False  # training arms: also evaluate on the data's test split (test_accuracy ...)

    def __post_init__(self) -> None:
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"experiment {self.name}: arm names repeat: {names}")
        for check in self.checks:
            for arm in (check.arm, check.other):
                if arm is not None and arm not in names:
                    raise ValueError(f"experiment {self.name}: check names arm '{arm}', not one of {names}")

    def arm(self, name: str) -> Arm:
        return next(a for a in self.arms if a.name == name)

    def budget(self, quick: bool) -> Budget:
        return self.quick if quick else self.full
