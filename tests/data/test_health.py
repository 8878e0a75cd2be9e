"""Data health: a crafted folder with every kind of problem, each found, and nothing aborts."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.artifacts import HealthReport
from cnnlab.data.health import check, exact, warnings_for


def _digitish(seed: int, size: int = 32) -> Image.Image:
    """A distinct textured RGB picture per seed (its perceptual hash differs from every other seed's)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((size, size), Image.BILINEAR)


@pytest.fixture(scope="module")
def sick(tmp_path_factory) -> Path:
    """train/{cat,dog} and test/{cat,dog}, with: an exact duplicate within a class, a label conflict,
    a train/test leak, a near duplicate (re-encoded and resized), an unreadable file, a grayscale image
    among RGB ones, and a 100x20 strip."""
    root = tmp_path_factory.mktemp("sick") / "data"
    for split, cls in [("train", "cat"), ("train", "dog"), ("test", "cat"), ("test", "dog")]:
        (root / split / cls).mkdir(parents=True)
    seed = 0
    for cls, n in (("cat", 6), ("dog", 2)):  # 6 cats, 2 dogs in train (+ the copies below): imbalance
        for i in range(n):
            seed += 1
            _digitish(seed).save(root / "train" / cls / f"{cls}{i}.png")
    for cls in ("cat", "dog"):
        seed += 1
        _digitish(seed).save(root / "test" / cls / f"{cls}_t.png")
    shutil.copy(root / "train/cat/cat0.png", root / "train/cat/cat0_copy.png")  # duplicate within a class
    shutil.copy(root / "train/cat/cat1.png", root / "train/dog/looks_like_a_dog.png")  # label conflict
    shutil.copy(root / "train/cat/cat2.png", root / "test/cat/leaked.png")  # train/test leak
    Image.open(root / "train/cat/cat3.png").convert("RGB").resize((30, 30)).save(
        root / "train/cat/cat3_small.jpg", quality=92)  # a near duplicate
    (root / "train/dog/notes.png").write_text("not an image at all")  # unreadable
    Image.new("L", (32, 32), 128).save(root / "train/dog/gray.png")  # grayscale among RGB
    _digitish(999).resize((100, 20)).save(root / "train/dog/strip.png")  # extreme aspect ratio
    return root


@pytest.fixture(scope="module")
def report(sick) -> HealthReport:
    return check(sick)


def test_counts_per_class_and_split_and_the_imbalance_ratio(report):
    # cats: 6 + copy + near-dup jpg in train, 2 in test; dogs: 2 + conflict + gray + strip, 1 in test (notes.png
    # is unreadable: listed there, not counted as a dog)
    assert report.classes == ["cat", "dog"]
    assert report.counts["cat"] == {"test": 2, "train": 8}
    assert report.counts["dog"] == {"test": 1, "train": 5}
    assert report.imbalance_ratio == pytest.approx(10 / 6)


def test_unreadable_files_are_listed_with_their_reason_and_the_rest_is_still_checked(report, sick):
    assert [u.path for u in report.unreadable] == [str(sick / "train/dog/notes.png")]
    assert "not a readable image" in report.unreadable[0].reason
    assert report.sizes.modes["RGB"] >= 15  # every other image was decoded


def test_exact_duplicates_label_conflicts_and_leaks_are_told_apart(report, sick):
    # within one class (the leaked copy is one too, across splits)
    assert sorted(report.duplicates) == sorted([[str(sick / "train/cat/cat0.png"), str(sick / "train/cat/cat0_copy.png")],
                                                   [str(sick / "train/cat/cat2.png"), str(sick / "test/cat/leaked.png")]])
    exact_conflicts = [c for c in report.label_conflicts if c.kind == "exact"]
    assert len(exact_conflicts) == 1
    assert {(x.path, x.label) for x in exact_conflicts[0].images} == {
        (str(sick / "train/cat/cat1.png"), "cat"), (str(sick / "train/dog/looks_like_a_dog.png"), "dog")}
    exact_leaks = [x for x in report.leaks if x.kind == "exact"]
    assert [x.to_json() for x in exact_leaks] == [{"train": str(sick / "train/cat/cat2.png"), "test": str(sick / "test/cat/leaked.png"),
                            "kind": "exact"}]


def test_a_resized_reencoded_copy_is_a_near_duplicate_and_distinct_images_are_not(report, sick):
    assert report.near_duplicates == [[str(sick / "train/cat/cat3.png"), str(sick / "train/cat/cat3_small.jpg")]]


@pytest.mark.parametrize("method", [Image.NEAREST, Image.BILINEAR, Image.BICUBIC, Image.LANCZOS])
def test_an_enlarged_copy_of_a_small_image_is_a_near_duplicate(tmp_path, method):
    """scikit-learn's 8x8 digits and a 4x copy of one (MNIST-sized images were found; these were not)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i in range(40):
        folder = tmp_path / str(digits.target[i])
        folder.mkdir(exist_ok=True)
        Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8)).save(folder / f"d{i}.png")
    label = str(digits.target[7])
    Image.open(tmp_path / label / "d7.png").resize((32, 32), method).save(tmp_path / label / "d7_x4.png")
    found = check(tmp_path)
    assert found.near_duplicates == [[str(tmp_path / label / "d7.png"), str(tmp_path / label / "d7_x4.png")]]


def test_sizes_modes_and_extreme_aspect_ratios(report, sick):
    sizes = report.sizes
    assert sizes.smallest == [30, 30] and sizes.largest == [20, 100]  # by area
    assert sizes.mixed_modes is True and sizes.modes["L"] == 1
    assert sizes.extreme_aspect == [str(sick / "train/dog/strip.png")]


def test_the_cli_reports_everything_writes_strict_json_and_exits_zero(sick, tmp_path, cli):
    out = tmp_path / "health.json"
    proc = cli("datasets", "check", sick, "--json", out)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    for key in ("classes", "counts", "imbalance_ratio", "unreadable", "duplicates", "label_conflicts", "leaks", "sizes"):
        assert key in data
    assert "train/held-out leaks" in proc.stdout and "leak (exact)" in proc.stderr
    assert "label conflict (exact)" in proc.stderr and "notes.png" in proc.stderr


def test_trainings_cheap_check_finds_leaks_and_conflicts_and_says_so_in_one_line_each(sick):
    records = [(str(p), p.parent.name, p.parent.parent.name) for p in sorted(sick.rglob("*.png"))]
    found = exact(records)
    assert len(found.leaks) == 1 and len(found.label_conflicts) == 1
    lines = warnings_for(found)
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    assert "1 held-out image is a byte-for-byte copy" in lines[0] and "leaked.png" in lines[0]
    assert "cat and dog" in lines[1]


def test_training_warns_of_leaks_and_conflicts_and_keeps_what_it_found(sick, tmp_path, cli):
    from cnnlab import rundir

    proc = cli("train", sick, "--out", tmp_path / "run", "--epochs", "1", "--blocks", "[{filters: 4}]", "--dense", "[8]",
               "--progress", "false")
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert any("byte-for-byte cop" in line and "held-out" in line for line in warnings)
    assert any("label conflict" in line for line in warnings)
    found = json.loads((tmp_path / "run" / rundir.DATA_HEALTH).read_text())
    assert {"train": str(sick / "train/cat/cat2.png"), "test": str(sick / "test/cat/leaked.png")} in found["leaks"]
    assert len(found["label_conflicts"]) == 1
