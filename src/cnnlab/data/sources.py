"""Find the images of a dataset: class folders (optionally pre-split) or a CSV manifest.

Files that are not images are skipped and reported, never fatal; hidden files and OS litter
(``.DS_Store``, ``Thumbs.db``) are ignored silently. Layout mistakes that would make training
meaningless (no images, one class, an empty class folder) are clear errors.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from cnnlab.data.images import IGNORED_NAMES, IMAGE_EXTENSIONS
from cnnlab.errors import DataError
from cnnlab.catalog.names import Task

SPLIT_NAMES = ("train", "val", "test")
# Folder names of the splits: the Kaggle and fastai "valid" and the spelled-out "validation" are val too.
SPLIT_FOLDERS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
Label = Union[str, float]


@dataclass
class Entry:
    path: Path
    label: Label
    split: Optional[str] = None  # given by the layout (train/ val/ test/ or a CSV column)


@dataclass
class Skipped:
    path: Path
    reason: str


@dataclass
class Scan:
    root: Path
    entries: list[Entry]
    classes: list[str]
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # layout warnings, one line each

    @property
    def given_splits(self) -> bool:
        return any(e.split is not None for e in self.entries)


def _ignored(path: Path) -> bool:
    return path.name.startswith(".") or path.name.lower() in IGNORED_NAMES


def _class_folders(root: Path, split: Optional[str], skipped: list[Skipped]) -> list[Entry]:
    entries: list[Entry] = []
    for item in sorted(root.iterdir()):
        if _ignored(item):
            continue
        if item.is_file():
            skipped.append(Skipped(item, "not inside a class folder"))
            continue
        files = [f for f in sorted(item.rglob("*")) if f.is_file() and not _ignored(f)]
        images = [f for f in files if f.suffix.lower() in IMAGE_EXTENSIONS]
        skipped += [Skipped(f, f"not an image file ({f.suffix or 'no extension'})")
                    for f in files if f.suffix.lower() not in IMAGE_EXTENSIONS]
        if not images:
            raise DataError(
                f"class folder '{item}' has no images: add images to it or remove it "
                f"(image types: {', '.join(sorted(IMAGE_EXTENSIONS))})"
            )
        entries += [Entry(f, item.name, split) for f in images]
    return entries


def _manifest_rows(csv_path: Path, target_column: Optional[str]) -> tuple[list[dict], str]:
    """The manifest's rows and the name of its label column (``target_column``, else label, else the first
    column that is neither path nor split)."""
    with csv_path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        if "path" not in columns or len(columns) < 2:
            raise DataError(f"CSV manifest {csv_path} needs a header with 'path' and a label column, got {columns}")
        label_col = target_column or ("label" if "label" in columns else [c for c in columns if c not in ("path", "split")][0])
        if label_col not in columns:
            raise DataError(f"column '{label_col}' is not in {csv_path}; columns: {', '.join(columns)}")
        return list(reader), label_col


def _manifest_label(raw: str, task: str, where: str) -> Label:
    if task != Task.REGRESSION:
        return raw
    try:
        return float(raw)
    except ValueError:
        raise DataError(f"{where}: regression target '{raw}' is not a number") from None


def _read_manifest(csv_path: Path, task: str, target_column: Optional[str]) -> tuple[list[Entry], list[Skipped]]:
    rows, label_col = _manifest_rows(csv_path, target_column)
    entries, skipped = [], []
    for line, row in enumerate(rows, start=2):
        path = (csv_path.parent / row["path"]).resolve()
        split = (row.get("split") or "").strip() or None
        if split is not None and split not in SPLIT_NAMES:
            raise DataError(f"{csv_path}:{line}: split must be one of {', '.join(SPLIT_NAMES)}, got '{split}'")
        raw = (row.get(label_col) or "").strip()
        label = _manifest_label(raw, task, f"{csv_path}:{line}")
        if not raw:
            skipped.append(Skipped(path, f"no label in column '{label_col}'"))
        elif not path.is_file():
            skipped.append(Skipped(path, "file not found"))
        else:
            entries.append(Entry(path, label, split))
    return entries, skipped


def _split_folders(root: Path, split_dirs: list[Path], skipped: list[Skipped], notes: list[str]) -> list[Entry]:
    """The class folders inside train/ val/ test/ (or their other spellings), each entry with its split."""
    splits = [SPLIT_FOLDERS[d.name] for d in split_dirs]
    twice = sorted({s for s in splits if splits.count(s) > 1})
    if twice:
        names = [d.name for d in split_dirs if SPLIT_FOLDERS[d.name] in twice]
        raise DataError(f"{root} has {' and '.join(names)}: both are the {twice[0]} split; keep one")
    entries = []
    for d in split_dirs:
        entries += _class_folders(d, SPLIT_FOLDERS[d.name], skipped)
    others = [p.name for p in sorted(root.iterdir()) if p.is_dir() and not _ignored(p) and p.name not in SPLIT_FOLDERS]
    if others:
        notes.append(f"{root}: ignoring the folder{'s' if len(others) > 1 else ''} {', '.join(others)} beside "
                     f"the splits (split folders: train, val or valid or validation, test)")
    return entries


def _entries(root: Path, task: str, target_column: Optional[str], skipped: list[Skipped],
             notes: list[str]) -> list[Entry]:
    """A CSV manifest's entries, or a folder's (its splits' class folders, or its own)."""
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise DataError(f"{root} is a file, not a dataset: give a folder of class sub-folders or a .csv manifest")
        entries, bad = _read_manifest(root, task, target_column)
        skipped += bad
        return entries
    if task == Task.REGRESSION:
        raise DataError(f"regression needs a CSV manifest (path,target), got the folder {root}")
    split_dirs = [root / s for s in SPLIT_FOLDERS if (root / s).is_dir()]
    return _split_folders(root, split_dirs, skipped, notes) if split_dirs else _class_folders(root, None, skipped)


def scan(path: Union[str, Path], task: str = Task.CLASSIFICATION.value, target_column: Optional[str] = None) -> Scan:
    """List every usable file of a dataset with its label (and given split, if any)."""
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"dataset not found: {root} (give a folder of class sub-folders or a CSV manifest)")
    skipped: list[Skipped] = []
    notes: list[str] = []
    entries = _entries(root, task, target_column, skipped, notes)
    if not entries:
        raise DataError(f"no images found in {root}: expected class sub-folders of images, or a CSV manifest")
    classes = [] if task == Task.REGRESSION else sorted({str(e.label) for e in entries})
    if task == Task.CLASSIFICATION and len(classes) < 2:
        raise DataError(f"{root} has {len(classes)} class ({', '.join(classes)}); a classifier needs at least two")
    return Scan(root, entries, classes, skipped, notes)


def only_split(scan_: Scan, split: str) -> Scan:
    """The entries of one given split (e.g. the test/ folder for evaluation), or all if none is given."""
    if not scan_.given_splits:
        return scan_
    chosen = [e for e in scan_.entries if e.split == split]
    if not chosen:
        have = sorted({e.split for e in scan_.entries if e.split})
        raise DataError(f"{scan_.root} has no '{split}' split (it has: {', '.join(have)})")
    skipped = [s for s in scan_.skipped if split in s.path.parts] if scan_.root.is_dir() else scan_.skipped
    return Scan(scan_.root, chosen, scan_.classes, skipped, scan_.notes)
