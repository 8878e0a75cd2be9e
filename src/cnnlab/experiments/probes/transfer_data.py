"""The transfer experiment's data, materialised under the experiment's own folder (OUT/data) as hard links
to one export of the built-in set (copies where the file system has no links): the source digits, the
target digits at each size per seed, the target's test digits, and the far source's shapes.

Every folder is built in a temporary sibling and renamed into place under a lock, so that units running
in parallel build it once and never see it half made. Nothing outside OUT/data is written or removed.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Optional

import numpy as np
from filelock import FileLock

from cnnlab import files
from cnnlab.errors import CnnlabError

NEAR, TARGET = ("0", "1", "2", "3", "4"), ("5", "6", "7", "8", "9")
VAL_PER_CLASS = 20  # the target's validation images per class (best epoch), the same at every size of a seed
SHAPES = {"classes": 3, "count": 200}  # the far source: 600 circles, squares, triangles (32x32 RGB; the pipeline greys them)
DONE, PARTIAL = ".cnnlab-transfer-data.json", ".cnnlab-transfer-partial"


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # no hard links here (another device, a file system without them): a copy
        shutil.copy2(src, dst)


def _materialise(folder: Path, layout: dict[str, list[Path]], links: Optional[dict[str, Path]] = None) -> Path:
    """``folder`` holding, for each relative class folder of ``layout``, links to its files, and for each name
    of ``links`` a relative symbolic link to that folder (built once)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if (folder / DONE).is_file():
            return folder
        if folder.exists():
            raise CnnlabError(f"{folder} exists but was not finished by the transfer experiment: remove it or "
                              f"use another --out")
        tmp = folder.with_name(folder.name + ".partial")
        if (tmp / PARTIAL).is_file() or (tmp / DONE).is_file():
            # our own half-made folder from a killed run: either marker proves it is ours (a kill between the
            # PARTIAL marker's removal and the rename leaves DONE alone)
            shutil.rmtree(tmp)
        elif tmp.exists():
            raise CnnlabError(f"{tmp} is in the way of the transfer experiment's data: remove it or use another --out")
        tmp.mkdir()
        (tmp / PARTIAL).touch()
        for sub, paths in layout.items():
            (tmp / sub).mkdir(parents=True, exist_ok=True)
            for path in paths:
                _link(path, tmp / sub / path.name)
        for name, target in (links or {}).items():
            (tmp / name).symlink_to(os.path.relpath(target, folder), target_is_directory=True)
        files.write_json(tmp / DONE, {"folders": {sub: len(p) for sub, p in layout.items()}})
        (tmp / PARTIAL).unlink()
        tmp.rename(folder)
    return folder


def _pngs(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png"))


def exported(data: str, out: Path) -> Path:
    """The digits as a folder with train/ and test/ class folders: a built-in set exported under OUT/data."""
    from cnnlab.data.samples import SAMPLES, export

    if data in SAMPLES:
        folder = out / "data" / data
        with FileLock(str(folder) + ".lock"):
            export(data, folder)
    else:
        folder = Path(data)
    missing = [f"{s}/{c}" for s in ("train", "test") for c in NEAR + TARGET if not (folder / s / c).is_dir()]
    if missing:
        raise CnnlabError(f"the transfer experiment needs digits in train/ and test/ class folders 0-9 (e.g. "
                          f"--data mnist-5k); {folder} lacks {', '.join(missing[:3])}")
    return folder


def near_source(digits: Path, out: Path) -> Path:
    """Digits 0-4 of the training split: the near source's data (cnnlab splits off its own validation)."""
    return _materialise(out / "data" / "source-digits-0-4", {c: _pngs(digits / "train" / c) for c in NEAR})


def far_source(out: Path) -> Path:
    """cnnlab's built-in shapes: the far source, no digit in it."""
    from cnnlab.data.samples import export

    folder = out / "data" / "source-shapes"
    with FileLock(str(folder) + ".lock"):
        export("shapes", folder, **SHAPES)
    return folder


def target_test(digits: Path, out: Path) -> Path:
    """The test split's digits 5-9: every target run is evaluated on these."""
    return _materialise(out / "data" / "target-test", {c: _pngs(digits / "test" / c) for c in TARGET})


def target(digits: Path, out: Path, seed: int, per_class: int) -> Path:
    """``per_class`` training images of each digit 5-9 and VAL_PER_CLASS validation ones, drawn with ``seed``
    (the training images of a smaller size are among those of a larger one, as in a learning curve), and the
    test digits 5-9 (test/, a link to ``target_test``: the same for every run)."""
    layout: dict[str, list[Path]] = {}
    for c in TARGET:
        pool = _pngs(digits / "train" / c)
        if len(pool) < VAL_PER_CLASS + per_class:
            raise CnnlabError(f"digit {c} has {len(pool)} training images; {per_class} per class and "
                              f"{VAL_PER_CLASS} for validation need {VAL_PER_CLASS + per_class}")
        order = np.random.default_rng([seed, int(c)]).permutation(len(pool))
        layout[f"val/{c}"] = [pool[i] for i in order[:VAL_PER_CLASS]]
        layout[f"train/{c}"] = [pool[i] for i in order[VAL_PER_CLASS: VAL_PER_CLASS + per_class]]
    return _materialise(out / "data" / "target" / f"seed-{seed}" / f"n-{per_class}", layout,
                        {"test": target_test(digits, out)})
