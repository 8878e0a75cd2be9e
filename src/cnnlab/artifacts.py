"""The typed artifacts of a run: what evaluation.json, calibration.json, data_health.json and a leaderboard
row hold. ``cnnlab.rundir`` reads and writes them; everything else reads their attributes.

Each model's fields are the file's keys, in the order the file has always held them. A file keeps exactly
the keys its writer set (``to_json``), so runs written before a field existed read back as they were, and a
field written as ``null`` stays ``null``. Reading is tolerant as it always was: a key a file lacks is None
(or the documented default of an older run), a key this version does not know is ignored; a value of the
wrong type is one ``RunDirError`` naming the file and the key (``rundir``).

No torch here: the calibration record is built in ``cnnlab.calibration``, the health record in
``cnnlab.data.health``, both below ``rundir``.
"""
from __future__ import annotations

import json
from typing import Any, Optional, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator


class Artifact(BaseModel):
    """A JSON document of a run: unknown keys ignored, values checked on assignment."""

    model_config = ConfigDict(extra="ignore", validate_assignment=True)

    def to_json(self) -> dict[str, Any]:
        """The document as written: the keys its writer set, in field order (NaN stays for files.dumps
        to turn into null)."""
        return self.model_dump(exclude_unset=True)


A = TypeVar("A", bound=Artifact)


def parse(model: type[A], text: str) -> A:
    """``text`` as a ``model``, or a ValueError saying what is wrong (the key and why; NaN is not JSON)."""

    def no_constant(constant: str):
        raise ValueError(f"it holds {constant}, which JSON does not allow")

    try:
        return model.model_validate(json.loads(text, parse_constant=no_constant))
    except ValidationError as exc:
        raise ValueError(first_error(exc)) from None


def first_error(exc: ValidationError) -> str:
    """A validation error in a few words: the first key at fault and why."""
    first = exc.errors()[0]
    return f"{'.'.join(str(part) for part in first['loc']) or 'the document'}: {first['msg']}"


# ----------------------------------------------------------------------------- shared parts
class SkippedFile(Artifact):
    path: str
    reason: str


class OutOfFold(Artifact):
    """ECE and NLL before/after the temperature, each image scaled by the T fitted on the other folds."""

    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float


# ----------------------------------------------------------------------------- calibration.json
class Calibration(Artifact):
    """calibration.json: whether the evidence supports a temperature, and which (``calibration.decide``).
    A run calibrated before ``kept`` existed kept its temperature; before cross-validation it has no
    ``out_of_fold`` figures."""

    method: Optional[str] = None
    split: str = "val"  # the images that fitted it
    n: Optional[int] = None
    errors: Optional[int] = None
    bins: Optional[int] = None
    bounds: Optional[list[float]] = None
    folds: Optional[int] = None
    kept: bool = True
    temperature: float = 1.0  # 1.0 unless kept
    fitted_temperature: Optional[float] = None
    fold_temperatures: Optional[list[float]] = None
    out_of_fold: Optional[OutOfFold] = None
    reason: Optional[str] = None

    @property
    def applied(self) -> float:
        """The temperature prediction divides the logits by: 1.0 unless one was kept."""
        return float(self.temperature) if self.kept else 1.0


# ----------------------------------------------------------------------------- evaluation.json
class ClassFigures(Artifact):
    """One class's figures: None (n/a) for a class with no image in the evaluated set."""

    precision: Optional[float] = None
    recall: Optional[float] = None
    f1: Optional[float] = None
    support: int = 0


class ReliabilityBin(Artifact):
    low: float
    high: float
    n: int
    confidence: Optional[float] = None
    accuracy: Optional[float] = None


class CalibrationFigures(Artifact):
    """An evaluation's calibration: ECE before and after the run's temperature and the reliability bins.
    ``kept`` is None for a run without calibration.json; ``ece_before`` None with TTA."""

    temperature: float = 1.0
    bins: Optional[int] = None
    ece_before: Optional[float] = None
    ece_after: Optional[float] = None
    reliability: list[ReliabilityBin] = []
    kept: Optional[bool] = None
    reason: Optional[str] = None
    fitted_on_these_images: bool = False
    out_of_fold: Optional[OutOfFold] = None


class Evaluation(Artifact):
    """evaluation.json and evaluations/<data>.json: classification figures (``classes`` set) or regression
    figures (``mae``, ``rmse``, ``r2``), then what was evaluated. An empty one: not evaluated yet."""

    classes: Optional[list[str]] = None
    n: Optional[int] = None
    accuracy: Optional[float] = None
    balanced_accuracy: Optional[float] = None
    precision_macro: Optional[float] = None
    recall_macro: Optional[float] = None
    f1_macro: Optional[float] = None
    precision_weighted: Optional[float] = None
    recall_weighted: Optional[float] = None
    f1_weighted: Optional[float] = None
    precision_micro: Optional[float] = None
    recall_micro: Optional[float] = None
    f1_micro: Optional[float] = None
    per_class: Optional[dict[str, ClassFigures]] = None
    absent_classes: Optional[list[str]] = None  # classes without an image: left out of the averages
    top_k_accuracy: Optional[dict[str, float]] = None
    confusion_matrix: Optional[list[list[int]]] = None
    calibration: Optional[CalibrationFigures] = None
    mae: Optional[float] = None
    rmse: Optional[float] = None
    r2: Optional[float] = None
    data: Optional[str] = None
    split: Optional[str] = None  # test, val or all
    split_note: Optional[str] = None  # why a headline on validation images is optimistic
    tta: Optional[list[str]] = None  # the views averaged, with test-time augmentation
    skipped: Optional[list[SkippedFile]] = None
    file: Optional[str] = None  # where it was written

    @property
    def is_classification(self) -> bool:
        return self.classes is not None

    def averages(self, kind: str) -> tuple[Optional[float], Optional[float], Optional[float]]:
        """Precision, recall and F1 averaged by ``kind``: macro, weighted or micro."""
        return getattr(self, f"precision_{kind}"), getattr(self, f"recall_{kind}"), getattr(self, f"f1_{kind}")


# ----------------------------------------------------------------------------- data_health.json
class LabelledPath(Artifact):
    path: str
    label: str


class Conflict(Artifact):
    """The same image under two or more classes; ``kind``: exact or near (``datasets check``)."""

    images: list[LabelledPath]
    kind: Optional[str] = None

    @property
    def labels(self) -> list[str]:
        return sorted({image.label for image in self.images})


class Leak(Artifact):
    """A held-out image (val or test) that is a copy of a training image."""

    train: str
    val: Optional[str] = None
    test: Optional[str] = None
    kind: Optional[str] = None

    @property
    def held_out(self) -> str:
        return self.val if self.val is not None else str(self.test)


class DataHealth(Artifact):
    """data_health.json: what training's exact-duplicate check found among its images."""

    images: int = 0
    duplicates: list[list[str]] = []  # groups of identical images within a class
    label_conflicts: list[Conflict] = []
    leaks: list[Leak] = []


class Sizes(Artifact):
    """Image sizes (H, W) and modes of a dataset's readable images; empty when none is readable."""

    smallest: Optional[list[int]] = None
    largest: Optional[list[int]] = None
    most_common: Optional[list[int]] = None
    most_common_count: Optional[int] = None
    distinct: Optional[int] = None
    modes: Optional[dict[str, int]] = None
    mixed_modes: Optional[bool] = None
    extreme_aspect: Optional[list[str]] = None
    extreme_aspect_limit: Optional[float] = None


class HealthReport(Artifact):
    """``cnnlab datasets check``'s whole report (its --json file): counts, unreadable files, exact and near
    duplicates, label conflicts and leaks (each marked exact or near), sizes."""

    data: str
    images: int
    classes: list[str] = []
    counts: dict[str, dict[str, int]] = {}  # class -> split -> images
    imbalance_ratio: Optional[float] = None
    unreadable: list[SkippedFile] = []
    duplicates: list[list[str]] = []
    label_conflicts: list[Conflict] = []
    leaks: list[Leak] = []
    near_duplicates: list[list[str]] = []
    sizes: Sizes = Sizes()


# ----------------------------------------------------------------------------- leaderboard.csv
class LeaderboardRow(Artifact):
    """One model of ``cnnlab compare``: its figures, or why it has none (``error``)."""

    model: str
    accuracy: Optional[float] = None
    f1_macro: Optional[float] = None
    params: Optional[int] = None
    trained_params: Optional[int] = None
    train_seconds: Optional[float] = None
    latency_ms: Optional[float] = None
    input: str = ""  # CxHxW
    epochs: str = ""  # complete epochs, and why it stopped early ("3 (budget)")
    report: str = ""
    error: str = ""  # why this model has no figures; the others go on

    @field_validator("accuracy", "f1_macro", "params", "trained_params", "train_seconds", "latency_ms", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if value == "" else value  # a CSV cell holds "" for a missing figure


class TrainingInfo(BaseModel):
    """training.json, from the trainer's state when training ends (or diverges). Runs written before a
    field existed lack it: ``complete`` then counts as finished, the strategy as full."""

    model_config = ConfigDict(extra="allow")  # a newer cnnlab's fields survive a read and a write

    complete: bool = True
    seconds: Optional[float] = None  # the whole training's, over every session of a resumed run
    epochs: Optional[int] = None  # complete epochs (one cut short by a budget does not count)
    best_epoch: Optional[int] = None  # counted from 0, as metrics.csv's epoch column
    monitor: Optional[str] = None
    stopped: Optional[str] = None  # "budget", "early stopping", or None (every epoch ran)
    stopped_early: Optional[bool] = None
    strategy: Optional[str] = None
    final: dict[str, float] = {}  # the last complete epoch's figures
    device: Optional[str] = None
    diverged: Optional[str] = None  # why training stopped (complete is False)
