"""The run directory: the only thing later stages read.

    config.yaml          the fully resolved config
    classes.json         class names in index order (empty for regression)
    preprocessing.json   input channels, size, mean, std
    split.csv            path,label,split of every image used
    skipped.csv          path,reason of every file that could not be used
    metrics.csv          per-epoch train/val loss and accuracy, learning rate, time; its epoch column counts
                         from 0 (as training.json's best_epoch), where messages and the report count from 1
    model.safetensors    the network weights (best epoch when there is a validation set)
    training.json        wall time, epochs run, best epoch, final metrics
    checkpoints/         Lightning checkpoints: last.ckpt (every epoch, with every random state) for
                         --resume, best.ckpt (the best epoch by the monitored metric)
    gradients.csv        per-layer gradient norms (with --gradient-every)
    calibration.json     classification: the temperature (cross-validated on the validation split), or why
                         none was kept (T = 1), with the out-of-fold ECE and NLL before/after
    data_health.json     what training's exact-duplicate check found (leaks, label conflicts)
    lr_find.png, lr_find.json                with --lr auto: the range test's plot and figures
    tensorboard/, mlruns/, wandb/            with --logger tensorboard / mlflow / wandb
  added by later stages:
    evaluation.json, confusion_matrix*.png   cnnlab evaluate on the run's own held-out images
    evaluations/<data>.json                  cnnlab evaluate on other data (or --split all)
    report.html                              cnnlab report
    export/                                  cnnlab export: model.onnx (+ client.py) or model.torchscript.pt,
                                             export.json (its input, inside steps, outputs), classes.json
  beside the runs of cnnlab compare: leaderboard.csv (its rows), leaderboard.md, leaderboard.html
  and .cnnlab-run (the marker that proves the folder is a cnnlab run), .cnnlab-lock (held while training
  writes it): cnnlab/ownership.py.

The JSON documents are typed (cnnlab/artifacts.py): written from their models here, read back into them
here, strictly valid (files.dumps). Imports torch and the model definitions only, so prediction and
serving start fast.
"""
from __future__ import annotations

import csv
import io
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Union

import torch
from pydantic import ValidationError
from safetensors.torch import save

from cnnlab import files, ownership
from cnnlab.artifacts import A, Calibration, DataHealth, Evaluation, LeaderboardRow, TrainingInfo, first_error, parse
from cnnlab.config import SCHEMA_VERSION, Config, load_config
from cnnlab.errors import CnnlabError, RunBusy, RunDirError, WeightsError
from cnnlab.models.image_model import ImageModel
from cnnlab.preprocessing import Preprocessing
from cnnlab.catalog.names import Task

CONFIG = "config.yaml"
CLASSES = "classes.json"
PREPROCESSING = "preprocessing.json"
CALIBRATION = "calibration.json"  # temperature scaling, cross-validated on the validation split
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
LR_FIND_PNG, LR_FIND_JSON = "lr_find.png", "lr_find.json"  # --lr auto's range test
TENSORBOARD, MLRUNS, WANDB = "tensorboard", "mlruns", "wandb"
TRACKERS = (TENSORBOARD, MLRUNS, WANDB)
TRACKER_DIRS = {"tensorboard": TENSORBOARD, "mlflow": MLRUNS, "wandb": WANDB}  # --logger -> its folder
# cnnlab compare's folder: the runs, and the leaderboard (csv: the rows; md and html: to read)
LEADERBOARD_CSV, LEADERBOARD_MD, LEADERBOARD_HTML = "leaderboard.csv", "leaderboard.md", "leaderboard.html"
REQUIRED = (CONFIG, CLASSES, PREPROCESSING, WEIGHTS)
INPUTS = (CONFIG, CLASSES, PREPROCESSING, SPLIT, SKIPPED)  # written together before training starts
# Every entry cnnlab writes at the top of a run directory: --overwrite removes these and nothing else.
WRITTEN = frozenset((CONFIG, CLASSES, PREPROCESSING, CALIBRATION, DATA_HEALTH, SPLIT, SKIPPED, METRICS, WEIGHTS,
                     TRAINING, CHECKPOINTS, EVALUATION, EVALUATIONS, GRADIENTS, CONFUSION, CONFUSION_NORMALIZED,
                     REPORT, EXPORT, LR_FIND_PNG, LR_FIND_JSON, *TRACKERS))
# What a killed write leaves: files.atomic_path's temp files, and the LR finder's ".lr_find_<uuid>.ckpt".
_LEFTOVER = re.compile(r"\.(?P<name>.+)\.[0-9a-z_]{6,}\.tmp|\.lr_find_[0-9a-f-]+\.ckpt")


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


def write_training(out: Path, info: "TrainingInfo") -> None:
    """training.json: complete or not, time, epochs, best epoch, final figures (the fields that were set)."""
    files.write_json(Path(out) / TRAINING, info.model_dump(mode="json", exclude_unset=True))


def read_training(run_dir: Path) -> Optional["TrainingInfo"]:
    """training.json as written (None before training ended or diverged)."""
    file = Path(run_dir) / TRAINING
    return TrainingInfo.model_validate_json(file.read_bytes()) if file.is_file() else None


def read_artifact(path: Path, model: type[A]) -> Optional[A]:
    """The typed document in ``path`` (None when there is no such file), or one RunDirError naming the
    file and the key: a key the file lacks takes the model's default, one it does not know is ignored."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return parse(model, path.read_text())
    except ValueError as exc:  # not JSON, not UTF-8, or a value of the wrong type
        raise RunDirError(f"{path} is not a valid {model.__name__} file ({exc}): it was not written by cnnlab, or "
                          f"was edited; write it again (train, evaluate or compare)") from None


def write_evaluation(run_dir: Path, evaluation: Evaluation, name: str | None = None) -> Path:
    """evaluation.json (``name`` None: the run's own held-out images) or evaluations/<name>.json."""
    return files.write_json(evaluation_path(run_dir, name), evaluation)


def write_calibration(out: Path, calibration: Calibration) -> Path:
    return files.write_json(Path(out) / CALIBRATION, calibration)


def write_data_health(out: Path, health: DataHealth) -> Path:
    return files.write_json(Path(out) / DATA_HEALTH, health)


def tracker(run_dir: Path, logger: str, run: str):
    """The Lightning logger of ``--logger`` (None for csv), writing into its folder of the run."""
    from cnnlab.catalog.loggers import LOGGERS

    return LOGGERS.build(logger, folder=Path(run_dir) / TRACKER_DIRS.get(logger, logger), run=run)


def leaderboard_paths(folder: Path) -> tuple[Path, Path, Path]:
    """cnnlab compare's leaderboard in ``folder``: csv (the rows), md and html."""
    return Path(folder) / LEADERBOARD_CSV, Path(folder) / LEADERBOARD_MD, Path(folder) / LEADERBOARD_HTML


def write_leaderboard_rows(folder: Path, rows: Iterable[LeaderboardRow]) -> None:
    header = list(LeaderboardRow.model_fields)
    write_csv(Path(folder) / LEADERBOARD_CSV, header, ([getattr(r, k) for k in header] for r in rows))


def read_leaderboard(folder: Path) -> list[LeaderboardRow]:
    """leaderboard.csv's rows, best first ([] without one); a row that does not parse is one RunDirError."""
    path, rows = Path(folder) / LEADERBOARD_CSV, []
    for number, row in enumerate(read_csv(path), start=1):
        try:
            rows.append(LeaderboardRow.model_validate(row))
        except ValidationError as exc:
            raise RunDirError(f"{path} is not a valid leaderboard (row {number}, {first_error(exc)}): write it "
                              f"again with cnnlab compare") from None
    return rows


def evaluation_path(run_dir: Path, name: str | None = None) -> Path:
    """evaluation.json (the run's own held-out images: its headline), or evaluations/<name>.json."""
    return Path(run_dir) / EVALUATION if name is None else Path(run_dir) / EVALUATIONS / f"{name}.json"


def confusion_paths(run_dir: Path) -> tuple[Path, Path]:
    """The confusion-matrix PNGs of the headline evaluation: counts, and row-normalised."""
    return Path(run_dir) / CONFUSION, Path(run_dir) / CONFUSION_NORMALIZED


def weights_path(run_dir: Path) -> Path:
    return Path(run_dir) / WEIGHTS


def is_run(folder: Path) -> bool:
    """Whether cnnlab can prove that ``folder`` is one of its run directories: its marker, or, for a run
    written before markers existed, all of a run's input files with a config.yaml that loads as a
    cnnlab run's config. A config.yaml alone, a name any project may have, is no proof."""
    folder = Path(folder)
    if ownership.read_marker(folder) is not None:
        return True
    if not all((folder / name).is_file() for name in INPUTS):
        return False
    try:
        load_run_config(folder)
    except (CnnlabError, OSError, ValueError):
        return False
    return True


def holds_run(run_dir: Path) -> bool:
    """Whether a run was started in ``run_dir``: a cnnlab run directory whose inputs were written."""
    return (Path(run_dir) / CONFIG).is_file() and is_run(run_dir)


def _written_by_cnnlab(name: str) -> bool:
    leftover = _LEFTOVER.fullmatch(name)
    return name in WRITTEN or (leftover is not None and leftover.group("name") in (None, *WRITTEN))


def foreign_entries(folder: Path) -> list[str]:
    """The entries of ``folder`` that cnnlab did not write (its marker and lock count as its own)."""
    own = (ownership.MARKER, ownership.LOCK)
    return sorted(p.name for p in Path(folder).iterdir() if p.name not in own and not _written_by_cnnlab(p.name))


def empty_run(folder: Path) -> tuple[int, list[str]]:
    """Remove what cnnlab wrote in the run directory ``folder`` (not its marker and lock); anything else
    stays. Returns the number of entries removed and the names kept. A link is removed, never followed."""
    removed = 0
    for item in sorted(Path(folder).iterdir()):
        if not _written_by_cnnlab(item.name):
            continue
        shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()
        removed += 1
    return removed, foreign_entries(folder)


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
        writer = ownership.busy_elsewhere(path)
        if writer is not None:
            raise RunBusy(f"{path} is being written by {writer}: wait for it to finish, or stop it and continue "
                          f"later with: cnnlab train --resume --out {path}")
        missing = [name for name in REQUIRED if not (path / name).is_file()]
        if missing:
            hint = f" (training may not have finished; continue it with: cnnlab train --resume --out {path})" \
                if (path / CONFIG).is_file() else ""
            raise RunDirError(f"{path} is not a complete cnnlab run directory: missing {', '.join(missing)}{hint}")
        config = load_run_config(path)
        classes = json.loads((path / CLASSES).read_text())
        return cls(path, config, classes, Preprocessing.load(path / PREPROCESSING))

    @property
    def task(self) -> str:
        return self.config.task

    @property
    def num_outputs(self) -> int:
        return len(self.classes) if self.task == Task.CLASSIFICATION else 1

    def metrics(self) -> list[dict]:
        return metrics_rows(self.path)

    def training_info(self) -> dict:
        return self.training_file(self.path)

    def training(self) -> Optional["TrainingInfo"]:
        return read_training(self.path)

    def training_figures(self) -> dict[str, float]:
        """The last epoch's figures, and ``seconds``: the whole training time (training.json's, as the
        report's; a run before this kept its last epoch's time among the figures)."""
        info = self.training_info()
        figures = {k: v for k, v in info.get("final", {}).items() if k != "seconds"}
        return {**figures, "seconds": info["seconds"]} if "seconds" in info else figures

    def split(self) -> list[dict]:
        """split.csv: path, label and split of every image used."""
        return read_csv(self.path / SPLIT)

    def skipped(self) -> list[dict]:
        return read_csv(self.path / SKIPPED)

    def evaluation(self) -> Evaluation:
        """The run's headline evaluation (evaluation.json); an empty one before ``cnnlab evaluate``."""
        return read_artifact(evaluation_path(self.path), Evaluation) or Evaluation()

    def calibration(self) -> Optional[Calibration]:
        """calibration.json (None when the run has none: no validation split, regression, or calibrate off):
        the temperature and whether it was kept (runs before that field kept theirs)."""
        return read_artifact(self.path / CALIBRATION, Calibration)

    def temperature(self) -> float:
        """The temperature prediction divides the logits by: 1.0 without a kept one."""
        cal = self.calibration()
        return cal.applied if cal else 1.0

    def data_health(self) -> Optional[DataHealth]:
        """data_health.json: what training's exact-duplicate check found (None for runs before it)."""
        return read_artifact(self.path / DATA_HEALTH, DataHealth)

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
