"""The built-in datasets, shrunk for tests that run documented commands or the whole course: the same
names, classes, image sizes and train/test split, with only the first few images of each class and split.
A test that uses this says so; it changes the data's size, never what a command does with it."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from cnnlab.data import samples
from cnnlab.experiments.probes import common

PER_CLASS = {"train": 12, "test": 4}


def shrink(data: samples.SampleSet, per_class: dict[str, int] = PER_CLASS) -> samples.SampleSet:
    keep = np.zeros(len(data.labels), dtype=bool)
    for split, n in per_class.items():
        for label in np.unique(data.labels):
            keep[np.flatnonzero((data.split == split) & (data.labels == label))[:n]] = True
    return samples.SampleSet(data.images[keep], data.labels[keep], data.classes, data.split[keep])


_MADE: dict[tuple, samples.SampleSet] = {}  # one load of each real set per options, per test process


def _tiny(name: str, build, **options) -> samples.SampleSet:
    key = (name, tuple(sorted(options.items())))
    if key not in _MADE:
        _MADE[key] = shrink(build(**options))
    return _MADE[key]


def use_tiny_builtins(monkeypatch, names=("mnist-5k", "digits")) -> None:
    """Make the named built-in sets tiny for this test (the registry's own entries, wrapped). The probes'
    in-process cache of loaded sets is swapped for an empty one too, and restored with the rest: the tiny
    sets must not outlive the patch in a cache that later tests of the same worker read."""
    monkeypatch.setattr(common, "_raw", lru_cache(maxsize=4)(common._raw.__wrapped__))
    for name in names:
        build = samples.SAMPLES.get(name)
        monkeypatch.setitem(samples.SAMPLES._entries, name,
                            lambda name=name, build=build, **opts: _tiny(name, build, **opts))
