"""Data health: what is wrong with a dataset before it spoils a run. It reports, it never aborts.

``check(DATA)`` (``cnnlab datasets check``) decodes every file with the training decoder and finds:
counts per class and split and the imbalance ratio; unreadable files and why; exact duplicates (a
SHA-256 of the bytes) and near duplicates (a perceptual hash of the decoded image, imagehash's pHash,
within ``NEAR`` bits), each reported within a class, across classes (a label conflict) and across
splits (a leak between training and test); image sizes, grayscale/RGB mixes and extreme aspect ratios.

``exact(records)`` is the cheap form training runs on its own split: exact hashes only.
"""
from __future__ import annotations

import hashlib
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Union

import numpy as np

from cnnlab.artifacts import Conflict, DataHealth, HealthReport, LabelledPath, Leak, Sizes, SkippedFile
from cnnlab.data.datasets import decoder_pool
from cnnlab.data.images import decode
from cnnlab.data.sources import scan
from cnnlab.errors import BadImage
from cnnlab.catalog.names import Task

log = logging.getLogger(__name__)

NEAR = 6  # pHash bits that may differ for two images to be compared as near duplicates (64 bits in all)
# ... and then their thumbnails must agree: pHash alone matches many different small, simple images
# (two handwritten 1s), so a candidate pair counts when its THUMB x THUMB grayscale thumbnails differ by
# at most THUMB_DIFF of the images' own variation (mean absolute deviation): a re-encoded, resized or
# lightly edited copy differs by a few percent of it, two different handwritten digits by a third or more.
THUMB, THUMB_DIFF = 32, 0.06
UPSCALING = (0, 2, 3, 1)  # PIL's NEAREST, BILINEAR, BICUBIC, LANCZOS: how an enlarged copy is usually made
ALL_PAIRS_LIMIT = 20_000  # above this many images, near duplicates are only those with equal hashes
EXTREME_ASPECT = 3.0  # width/height (or height/width) beyond which an image is listed
HELD_OUT = ("val", "test")


@dataclass
class Item:
    path: str
    label: str
    split: str
    digest: Optional[str] = None
    phash: Optional[int] = None
    size: Optional[tuple[int, int]] = None  # (H, W)
    mode: Optional[str] = None  # L or RGB
    thumb: Optional[np.ndarray] = None  # THUMB x THUMB grayscale, to confirm a near duplicate pixel by pixel


def _digest(path: Union[str, Path]) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _inspect(item: Item) -> Optional[str]:
    """Fill in the item's hashes, size and mode; the reason it is unreadable, or None."""
    import imagehash
    from PIL import Image

    try:
        item.digest = _digest(item.path)
        image = decode(item.path, 3, None)  # the training decoder, at full size
    except BadImage as exc:
        return exc.reason
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    item.size = (int(image.shape[1]), int(image.shape[2]))
    array = image.permute(1, 2, 0).numpy()
    item.mode = "L" if bool((array == array[..., :1]).all()) else "RGB"
    picture = Image.fromarray(array)
    item.phash = int(str(imagehash.phash(picture)), 16)
    gray = picture.convert("L")
    small = min(gray.size) < THUMB  # kept as it is: a thumbnail would invent pixels that _alike cannot match
    item.thumb = np.asarray(gray if small else gray.resize((THUMB, THUMB), Image.BILINEAR), dtype=np.float32)
    return None


def _alike(a: Item, b: Item) -> bool:
    x, y = sorted((a.thumb, b.thumb), key=lambda t: t.size)
    if x.shape == y.shape:
        return _differ(x, y) <= THUMB_DIFF
    # An image under THUMB against a larger one: is the larger an enlarged copy? Enlarge the small one as
    # the copy may have been made (each common filter; an 8x8 digit enlarged 4x matches one of them exactly,
    # two different digits differ by 0.15 or more of their variation).
    from PIL import Image

    small = Image.fromarray(x.astype(np.uint8))
    size = (y.shape[1], y.shape[0])
    return min(_differ(np.asarray(small.resize(size, f), dtype=np.float32), y) for f in UPSCALING) <= THUMB_DIFF


def _differ(x: np.ndarray, y: np.ndarray) -> float:
    """The mean absolute difference of two thumbnails as a share of their own variation."""
    spread = (np.abs(x - x.mean()).mean() + np.abs(y - y.mean()).mean()) / 2
    return float(np.abs(x - y).mean()) / max(float(spread), 1.0)


def _groups(keys: dict[int, list[int]]) -> list[list[int]]:
    return [sorted(g) for g in keys.values() if len(g) > 1]


def _near_groups(items: list[Item]) -> list[list[int]]:
    """Items whose pHashes differ in at most NEAR bits and whose thumbnails agree, joined (union-find)."""
    index = [i for i, it in enumerate(items) if it.phash is not None]
    parent = list(range(len(items)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(a: int, b: int) -> None:
        parent[root(a)] = root(b)

    if len(index) <= ALL_PAIRS_LIMIT:
        hashes = np.array([items[i].phash for i in index], dtype=np.uint64)
        for a in range(len(index)):
            x = np.bitwise_xor(hashes[a + 1:], hashes[a])
            bits = np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)
            for b in np.nonzero(bits <= NEAR)[0]:
                i, j = index[a], index[a + 1 + int(b)]
                if _alike(items[i], items[j]):
                    join(i, j)
    else:
        by_hash: dict[int, list[int]] = defaultdict(list)
        for i in index:
            by_hash[items[i].phash].append(i)
        for group in by_hash.values():
            for other in group[1:]:
                if _alike(items[group[0]], items[other]):
                    join(group[0], other)
    members: dict[int, list[int]] = defaultdict(list)
    for i in index:
        members[root(i)].append(i)
    return _groups(members)


def _findings(items: list[Item], groups: list[list[int]], kind: Optional[str] = None) -> DataHealth:
    """Duplicates within a class, label conflicts (the same image under two classes) and leaks
    (the same image in training and in a held-out split) among groups of identical images; each
    conflict and leak marked ``kind`` when one is given."""
    duplicates, conflicts, leaks = [], [], []
    mark = {} if kind is None else {"kind": kind}
    for group in groups:
        labels = {items[i].label for i in group}
        if len(labels) > 1:
            conflicts.append(Conflict(images=[LabelledPath(path=items[i].path, label=items[i].label) for i in group],
                                      **mark))
        else:
            duplicates.append([items[i].path for i in group])
        train = [items[i].path for i in group if items[i].split == "train"]
        held = [(items[i].split, items[i].path) for i in group if items[i].split in HELD_OUT]
        leaks += [Leak(train=t, **{split: h}, **mark) for t in train[:1] for split, h in held]
    return DataHealth(images=len(items), duplicates=duplicates, label_conflicts=conflicts, leaks=leaks)


def _counts(items: list[Item]) -> tuple[dict, Optional[float]]:
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for it in items:
        counts[it.label][it.split] += 1
    totals = {label: sum(per.values()) for label, per in counts.items()}
    ratio = max(totals.values()) / min(totals.values()) if totals and min(totals.values()) else None
    return {label: dict(sorted(per.items())) for label, per in sorted(counts.items())}, ratio


def _exact_groups(items: list[Item]) -> list[list[int]]:
    """Groups of items with the same SHA-256 (items that could not be read have none)."""
    by_digest: dict = defaultdict(list)
    for i, it in enumerate(items):
        if it.digest is not None:
            by_digest[it.digest].append(i)
    return _groups(by_digest)


def _inspected(found) -> tuple[list[Item], list[Item], list[SkippedFile]]:
    """Every image found, the readable ones (hashed and measured), and the unreadable files with why."""
    items = [Item(str(e.path), str(e.label), e.split or "all") for e in found.entries]
    reasons = list(decoder_pool().map(_inspect, items))
    unreadable = [SkippedFile(path=str(s.path), reason=s.reason) for s in found.skipped]
    unreadable += [SkippedFile(path=it.path, reason=r) for it, r in zip(items, reasons) if r is not None]
    return items, [it for it, r in zip(items, reasons) if r is None], unreadable


def check(data: Union[str, Path], task: str = Task.CLASSIFICATION.value, near: bool = True) -> HealthReport:
    """The whole report of ``cnnlab datasets check``: counts (class -> split -> n), the imbalance ratio,
    unreadable files, exact and near duplicates, label conflicts and leaks (each marked exact or near),
    sizes. Files are split by the layout (train/ val/ test/, a CSV column); without one, every image is "all"."""
    found = scan(data, task)
    items, readable, unreadable = _inspected(found)
    exact_groups = _exact_groups(readable)
    counts, ratio = _counts(readable) if task == Task.CLASSIFICATION else ({}, None)  # what training can use
    exact_findings = _findings(readable, exact_groups, "exact")
    in_exact = {frozenset(g) for g in exact_groups}
    near_groups = [g for g in _near_groups(readable) if frozenset(g) not in in_exact] if near else []
    near_findings = _findings(readable, near_groups, "near")
    # near or exact, conflicts and leaks both spoil a run: kept together, marked
    return HealthReport(data=str(data), images=len(items), classes=found.classes if task == Task.CLASSIFICATION else [],
                        counts=counts, imbalance_ratio=ratio, unreadable=unreadable,
                        duplicates=exact_findings.duplicates,
                        label_conflicts=exact_findings.label_conflicts + near_findings.label_conflicts,
                        leaks=exact_findings.leaks + near_findings.leaks,
                        near_duplicates=near_findings.duplicates, sizes=_sizes(readable))


def _sizes(items: list[Item]) -> Sizes:
    if not items:
        return Sizes()
    sizes = [it.size for it in items]
    areas = [h * w for h, w in sizes]
    modes = Counter(it.mode for it in items)
    extreme = [it.path for it in items if max(it.size) / max(1, min(it.size)) > EXTREME_ASPECT]
    common = Counter(sizes).most_common(1)[0]
    return Sizes(smallest=list(sizes[int(np.argmin(areas))]), largest=list(sizes[int(np.argmax(areas))]),
                 most_common=list(common[0]), most_common_count=common[1], distinct=len(set(sizes)),
                 modes=dict(sorted(modes.items())), mixed_modes=len(modes) > 1,
                 extreme_aspect=extreme, extreme_aspect_limit=EXTREME_ASPECT)


def exact(records: Iterable[tuple[str, str, str]]) -> DataHealth:
    """Training's own check on its images ((path, label, split) rows): exact duplicates only."""
    items = [Item(str(p), str(label), split) for p, label, split in records]

    def digest(it: Item) -> None:
        try:
            it.digest = _digest(it.path)
        except OSError:
            it.digest = None

    list(decoder_pool().map(digest, items))
    return _findings(items, _exact_groups(items))


def warnings_for(found: DataHealth) -> list[str]:
    """One line per problem that spoils a run: leaks between training and held-out images, label conflicts."""
    lines = []
    if found.leaks:
        first = found.leaks[0]
        n = len(found.leaks)
        lines.append(f"{n} held-out image{'s are' if n != 1 else ' is a'} byte-for-byte cop{'ies' if n != 1 else 'y'} of training images (e.g. "
                     f"{first.held_out} = {first.train}): the held-out figures are optimistic; cnnlab datasets check "
                     f"DATA lists them")
    if found.label_conflicts:
        labels = found.label_conflicts[0].labels
        n = len(found.label_conflicts)
        lines.append(f"{n} image{'s' if n != 1 else ''} appear{'s' if n == 1 else ''} under two or more classes (e.g. one under "
                     f"{' and '.join(labels)}): a label conflict; cnnlab datasets check DATA lists them")
    return lines
