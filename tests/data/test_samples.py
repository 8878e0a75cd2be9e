from collections import Counter

import numpy as np
import pytest

from cnnlab.data.samples import export, load
from cnnlab.data.sources import scan
from cnnlab.errors import CnnlabError


def test_mnist_5k_is_real_mnist_with_a_stratified_4000_1000_split():
    data = load("mnist-5k")
    assert data.images.shape == (5000, 28, 28) and data.images.dtype == np.uint8
    assert Counter(data.split) == {"train": 4000, "test": 1000}
    test_counts = Counter(data.labels[data.split == "test"])
    total = Counter(data.labels)
    for k in range(10):  # stratified: each class's share of the test split matches its share overall
        assert abs(test_counts[k] / 1000 - total[k] / 5000) < 0.002
    assert (load("mnist-5k").split == data.split).all()


def test_digits_export_layout(tmp_path):
    counts = export("digits", tmp_path / "d")
    assert counts["train"] + counts["test"] == 1797
    found = scan(tmp_path / "d")
    assert found.classes == [str(i) for i in range(10)]
    assert Counter(e.split for e in found.entries) == {"train": counts["train"], "test": counts["test"]}


def test_shapes_are_seeded_and_configurable():
    a = load("shapes", seed=1, size=20, count=6, classes="circle,star")
    b = load("shapes", seed=1, size=20, count=6, classes="circle,star")
    c = load("shapes", seed=2, size=20, count=6, classes="circle,star")
    assert a.images.shape == (12, 20, 20, 3) and a.classes == ["circle", "star"]
    assert (a.images == b.images).all() and not (a.images == c.images).all()


def test_shapes_bad_options():
    with pytest.raises(CnnlabError, match="shapes classes"):
        load("shapes", classes="circle,blob")
    with pytest.raises(CnnlabError, match="unknown option colour for dataset 'shapes': it takes seed, size, count, classes"):
        load("shapes", colour=3)


def test_export_refuses_a_non_empty_folder_but_reuses_its_own(tmp_path):
    export("shapes", tmp_path / "s", size=12, count=5)
    assert export("shapes", tmp_path / "s", size=12, count=5)["train"] > 0
    with pytest.raises(CnnlabError, match="not empty"):
        export("shapes", tmp_path / "s", size=12, count=6)
