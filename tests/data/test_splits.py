from collections import Counter

from cnnlab.data.splits import split_indices


def test_split_is_complete_disjoint_stratified_and_seeded():
    labels = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    parts = split_indices(labels, val_split=0.2, test_split=0.1, seed=3)
    everything = parts["train"] + parts["val"] + parts["test"]
    assert sorted(everything) == list(range(100))
    assert len(parts["test"]) == 10 and len(parts["val"]) == 20
    assert Counter(labels[i] for i in parts["val"]) == {"a": 10, "b": 6, "c": 4}
    assert split_indices(labels, 0.2, 0.1, seed=3) == parts
    assert split_indices(labels, 0.2, 0.1, seed=4) != parts


def test_zero_fractions_keep_everything_for_training():
    parts = split_indices(["a", "b"] * 5, 0.0, 0.0, seed=0)
    assert parts == {"train": list(range(10)), "val": [], "test": []}
