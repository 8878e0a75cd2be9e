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


# --train-images: a seeded, stratified subset of the training images (learning curves, small-data experiments)
def _prepared(root, **overrides):
    from cnnlab.config import Config, with_overrides
    from cnnlab.data.prepare import prepare
    from cnnlab.preprocessing import Preprocessing

    cfg = with_overrides(Config(), {"data.path": str(root), "val_split": 0.2, "test_split": 0.2, **overrides})
    return prepare(cfg, lambda probed: Preprocessing(channels=3, size=(16, 16)))


def test_train_images_keeps_that_many_stratified_and_leaves_val_and_test_alone(tmp_path):
    from conftest import write_images

    root = write_images(tmp_path / "data", {"a": 30, "b": 20, "c": 10})
    full, few = _prepared(root), _prepared(root, train_images=12)
    assert full.size("train") == 36 and few.size("train") == 12
    assert Counter(label for _, label, split in few.records if split == "train") == {"a": 6, "b": 4, "c": 2}
    for split in ("val", "test"):
        assert [r for r in few.records if r[2] == split] == [r for r in full.records if r[2] == split]
    assert len(few.records) == 12 + 12 + 12  # the images set aside are in no split (split.csv lists what was used)
    again, other_seed = _prepared(root, train_images=12), _prepared(root, train_images=12, seed=1)
    assert again.records == few.records and other_seed.records != few.records


def test_train_images_at_the_edges(tmp_path):
    from conftest import write_images

    root = write_images(tmp_path / "data", {"a": 30, "b": 20, "c": 10})
    all_of_them = _prepared(root, train_images=1000)  # more than there are: all, and one line says so
    assert all_of_them.size("train") == 36 and any("there are 36 training images" in n for n in all_of_them.notes)
    one = _prepared(root, train_images=1)  # fewer than the classes: every class still keeps an image
    assert {label for _, label, split in one.records if split == "train"} == {"a", "b", "c"}
    assert any("so that every class has one" in n for n in one.notes)


def test_train_images_through_the_cli(tmp_path, bars, cli):
    from cnnlab import rundir

    result = cli("train", str(bars), "--out", str(tmp_path / "run"), "--train-images", "9", "--epochs", "1",
                 "--blocks", "[{filters: 4}]", "--dense", "[8]", "--augment", "none", "--progress", "false")
    assert result.returncode == 0, result.stderr
    rows = rundir.read_csv(tmp_path / "run" / rundir.SPLIT)
    assert Counter(r["split"] for r in rows)["train"] == 9
    assert "train_images: 9" in (tmp_path / "run" / "config.yaml").read_text()  # the run says how it was made
    bad = cli("train", str(bars), "--out", str(tmp_path / "bad"), "--train-images", "0")
    assert bad.returncode != 0 and "train_images" in bad.stderr and not (tmp_path / "bad").exists()
