from collections import Counter

from cnnlab.data.splits import short_classes_note, split_indices


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


def test_a_class_of_one_image_stays_in_training_and_the_rest_stays_stratified():
    labels = ["a"] * 40 + ["b"] * 20 + ["c"]
    parts = split_indices(labels, val_split=0.1, test_split=0.1, seed=0)
    assert 60 in parts["train"]  # c's only image
    assert Counter(labels[i] for i in parts["test"]) == {"a": 4, "b": 2}
    note = short_classes_note(labels, parts, {"test": 0.1, "val": 0.1})
    assert note.startswith("1 of 3 classes have too few images") and "c: no test or val image" in note
    assert short_classes_note(["a", "b"] * 20, split_indices(["a", "b"] * 20, 0.1, 0.1, 0), {"test": 0.1}) is None


def test_a_split_too_small_to_stratify_never_takes_a_class_out_of_training():
    labels = [c for c in "abcdefghij" for _ in range(2)]  # 10 classes of 2: 2 test images cannot be stratified
    for seed in range(30):
        parts = split_indices(labels, val_split=0.1, test_split=0.1, seed=seed)
        assert {labels[i] for i in parts["train"]} == set(labels)
        assert sorted(parts["train"] + parts["val"] + parts["test"]) == list(range(20))
        assert all(isinstance(i, int) for part in parts.values() for i in part)
