"""The run directory: the only thing later stages read.

    config.yaml          the fully resolved config
    classes.json         class names in index order (empty for regression)
    preprocessing.json   input channels, size, mean, std
    split.csv            path,label,split of every image used
    skipped.csv          path,reason of every file that could not be used
    metrics.csv          per-epoch train/val loss and accuracy, learning rate, time
    model.safetensors    the network weights (best epoch when there is a validation set)
    training.json        wall time, epochs run, best epoch, final metrics
    checkpoints/         Lightning checkpoints: last.ckpt (every epoch, with every random state) for
                         --resume, best.ckpt (the best epoch by the monitored metric)
    gradients.csv        per-layer gradient norms (with --gradient-every)
    calibration.json     classification: the temperature fitted on the validation split, ECE before/after
    data_health.json     what training's exact-duplicate check found (leaks, label conflicts)
    tensorboard/, mlruns/  with --logger tensorboard / mlflow
  added by later stages:
    evaluation.json, confusion_matrix*.png   cnnlab evaluate on the run's own held-out images
    evaluations/<data>.json                  cnnlab evaluate on other data (or --split all)
    report.html                              cnnlab report
    export/                                  cnnlab export: model.onnx (+ client.py) or model.torchscript.pt,
                                             export.json (its input, inside steps, outputs), classes.json

Imports torch and the model definitions only, so prediction and serving start fast.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Union

import torch
from safetensors.torch import save

from cnnlab import files
from cnnlab.config import SCHEMA_VERSION, Config, load_config
from cnnlab.errors import RunDirError, WeightsError
from cnnlab.models.preprocess import ImageModel
from cnnlab.preprocessing import Preprocessing

CONFIG = "config.yaml"
CLASSES = "classes.json"
PREPROCESSING = "preprocessing.json"
CALIBRATION = "calibration.json"  # temperature scaling fitted on the validation split
DATA_HEALTH = "data_health.json"  # the exact-duplicate check training runs on its images
SPLIT = "split.csv"
SKIPPED = "skipped.csv"
METRICS = "metrics.csv"
WEIGHTS = "model.safetensors"
TRAINING = "training.json"
CHECKPOINTS = "checkpoints"
EVALUATION = "evaluation.json"  # the run's own held-out evaluation: its headline
EVALUATIONS = "evaluations"  # evaluations/<data>.json: other data, or the training images (--split all)
BEST, LAST = "best", "last"  # checkpoints/best.ckpt, checkpoints/last.ckpt
GRADIENTS = "gradients.csv"
CONFUSION, CONFUSION_NORMALIZED = "confusion_matrix.png", "confusion_matrix_normalized.png"
REPORT = "report.html"
EXPORT = "export"  # export/model.onnx or export/model.torchscript.pt, with export.json (what it takes and gives)
ONNX, TORCHSCRIPT, EXPORT_INFO, EXPORT_CLIENT = "model.onnx", "model.torchscript.pt", "export.json", "client.py"
REQUIRED = (CONFIG, CLASSES, PREPROCESSING, WEIGHTS)


def checkpoint(run_dir: Path, which: str = LAST) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"{which}.ckpt"


def non_finite(state: dict[str, torch.Tensor]) -> list[str]:
    """The names of the floating-point tensors holding NaN or an infinity."""
    return [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]


WEIGHTS_METADATA_KEY = "cnnlab"


def weights_metadata(config: Config, pre: Preprocessing, classes: list[str]) -> dict[str, str]:
    """What makes model.safetensors describe itself when it travels alone: the schema version, the resolved
    config, the preprocessing and the class names. One metadata key holding one JSON text: safetensors
    writes its metadata map in no fixed order, and a single entry keeps the file's bytes reproducible."""
    info = {"schema_version": SCHEMA_VERSION, "config": config.model_dump(mode="json"), "preprocessing": pre.to_dict(),
            "classes": classes}
    return {WEIGHTS_METADATA_KEY: files.dumps(info)}


def read_weights_metadata(path: Path) -> dict:
    """The metadata ``weights_metadata`` wrote into a weights file ({} for files without it)."""
    from safetensors import safe_open

    files.check_safetensors(path)
    with safe_open(str(path), "pt") as f:
        text = (f.metadata() or {}).get(WEIGHTS_METADATA_KEY)
    return files.loads_untrusted(text, path, "metadata") if text else {}


def save_weights(module: torch.nn.Module, path: Path, metadata: Optional[dict[str, str]] = None) -> None:
    """The weights as safetensors, atomically, with ``metadata``; non-finite weights are never written."""
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    broken = non_finite(state)
    if broken:
        raise RunDirError(f"not writing {path}: {len(broken)} tensors hold NaN or infinite values "
                          f"(first: {broken[0]}); training diverged")
    files.write_bytes(path, save(state, metadata=metadata))


# ----------------------------------------------------------------------------- the writers
def write_inputs(out: Path, config: Config, classes: list[str], pre: Preprocessing, records: Iterable[Iterable],
                 skipped: Iterable[tuple]) -> None:
    """What training starts from: config.yaml, classes.json, preprocessing.json, split.csv, skipped.csv."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files.write_text(out / CONFIG, config.to_yaml())
    files.write_json(out / CLASSES, classes)
    pre.save(out / PREPROCESSING)
    write_csv(out / SPLIT, ("path", "label", "split"), records)
    write_csv(out / SKIPPED, ("path", "reason"), skipped)


def write_config(out: Path, config: Config) -> None:
    """config.yaml again, after training resolved a choice it made at run time (--lr auto)."""
    files.write_text(Path(out) / CONFIG, config.to_yaml())


def write_training(out: Path, info: dict) -> None:
    """training.json: complete or not, time, epochs, best epoch, final figures."""
    files.write_json(Path(out) / TRAINING, info)


def evaluation_path(run_dir: Path, name: str | None = None) -> Path:
    """evaluation.json (the run's own held-out images: its headline), or evaluations/<name>.json."""
    return Path(run_dir) / EVALUATION if name is None else Path(run_dir) / EVALUATIONS / f"{name}.json"


def confusion_paths(run_dir: Path) -> tuple[Path, Path]:
    """The confusion-matrix PNGs of the headline evaluation: counts, and row-normalised."""
    return Path(run_dir) / CONFUSION, Path(run_dir) / CONFUSION_NORMALIZED


def weights_path(run_dir: Path) -> Path:
    return Path(run_dir) / WEIGHTS


def holds_run(run_dir: Path) -> bool:
    """Whether a run was started in ``run_dir`` (its config.yaml is written first)."""
    return (Path(run_dir) / CONFIG).is_file()


def load_run_config(run_dir: Path, overrides: dict | None = None) -> Config:
    """A run's config.yaml (of this or an older schema version), with ``overrides`` on top."""
    return load_config(Path(run_dir) / CONFIG, overrides, run_file=True)


def metrics_rows(run_dir: Path) -> list[dict]:
    return read_csv(Path(run_dir) / METRICS)


def write_csv(path: Path, header: Iterable[str], rows: Iterable[Iterable]) -> None:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    files.write_text(path, buf.getvalue())


def read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@dataclass
class Run:
    path: Path
    config: Config
    classes: list[str]
    pre: Preprocessing

    @classmethod
    def open(cls, path: Union[str, Path]) -> "Run":
        path = Path(path).expanduser()
        if not path.is_dir():
            raise RunDirError(f"run directory not found: {path} (train one with: cnnlab train DATA --out {path})")
        missing = [name for name in REQUIRED if not (path / name).is_file()]
        if missing:
            hint = " (training may not have finished; try: cnnlab train --resume)" if (path / CONFIG).is_file() else ""
            raise RunDirError(f"{path} is not a complete cnnlab run directory: missing {', '.join(missing)}{hint}")
        config = load_run_config(path)
        classes = json.loads((path / CLASSES).read_text())
        return cls(path, config, classes, Preprocessing.load(path / PREPROCESSING))

    @property
    def task(self) -> str:
        return self.config.task

    @property
    def num_outputs(self) -> int:
        return len(self.classes) if self.task == "classification" else 1

    def metrics(self) -> list[dict]:
        return metrics_rows(self.path)

    def training_info(self) -> dict:
        return self.training_file(self.path)

    def split(self) -> list[dict]:
        """split.csv: path, label and split of every image used."""
        return read_csv(self.path / SPLIT)

    def skipped(self) -> list[dict]:
        return read_csv(self.path / SKIPPED)

    def evaluation(self) -> dict:
        """The run's headline evaluation (evaluation.json), or {} before ``cnnlab evaluate``."""
        file = evaluation_path(self.path)
        return json.loads(file.read_text()) if file.is_file() else {}

    def calibration(self) -> dict:
        """calibration.json ({} when the run has none: no validation split, regression, or calibrate off)."""
        file = self.path / CALIBRATION
        return json.loads(file.read_text()) if file.is_file() else {}

    def temperature(self) -> float:
        return float(self.calibration().get("temperature", 1.0))

    def data_health(self) -> dict:
        file = self.path / DATA_HEALTH
        return json.loads(file.read_text()) if file.is_file() else {}

    def gradients(self) -> list[dict]:
        return read_csv(self.path / GRADIENTS)

    def export_dir(self) -> Path:
        return self.path / EXPORT

    @staticmethod
    def training_file(path: Path) -> dict:
        file = Path(path) / TRAINING
        return json.loads(file.read_text()) if file.is_file() else {}

    def load_model(self, device: Union[str, torch.device] = "cpu") -> ImageModel:
        from cnnlab.models.registry import build_model

        model = build_model(self.config, self.pre, self.num_outputs)
        state = files.load_safetensors(self.path / WEIGHTS)
        broken = non_finite(state)
        if broken:
            raise WeightsError(f"{self.path / WEIGHTS} holds NaN or infinite values ({len(broken)} tensors, first: "
                              f"{broken[0]}): the model cannot predict; train it again with a lower --lr")
        try:
            model.net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
            raise WeightsError(
                f"the weights in {self.path / WEIGHTS} do not fit model '{self.config.model.name}' as configured in "
                f"{self.path / CONFIG} ({first}); was the run directory mixed with another model's files?"
            ) from None
        return model.to(device).eval()
