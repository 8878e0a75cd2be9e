import pytest

from conftest import write_images

from cnnlab.data.sources import only_split, scan
from cnnlab.errors import CnnlabError


def test_class_folders_with_litter_and_non_images(tmp_path):
    write_images(tmp_path, {"cat": 3, "dog": 2})
    (tmp_path / "cat" / ".DS_Store").write_bytes(b"x")
    (tmp_path / "dog" / "Thumbs.db").write_bytes(b"x")
    (tmp_path / "dog" / "notes.txt").write_text("hi")
    (tmp_path / "README.md").write_text("hi")
    found = scan(tmp_path)
    assert found.classes == ["cat", "dog"]
    assert len(found.entries) == 5 and not found.given_splits
    reasons = {s.path.name: s.reason for s in found.skipped}
    assert reasons == {"notes.txt": "not an image file (.txt)", "README.md": "not inside a class folder"}


def test_given_splits_are_used(tmp_path):
    write_images(tmp_path / "train", {"a": 3, "b": 3})
    write_images(tmp_path / "test", {"a": 2, "b": 1})
    found = scan(tmp_path)
    assert found.given_splits
    assert {e.split for e in found.entries} == {"train", "test"}
    test = only_split(found, "test")
    assert len(test.entries) == 3


def test_csv_manifest_with_relative_paths_and_missing_files(tmp_path):
    write_images(tmp_path / "imgs", {"x": 2, "y": 2})
    files = sorted((tmp_path / "imgs").rglob("*.png"))
    lines = ["path,label"] + [f"imgs/{f.parent.name}/{f.name},{f.parent.name}" for f in files] + ["imgs/gone.png,x"]
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    found = scan(tmp_path / "m.csv")
    assert found.classes == ["x", "y"] and len(found.entries) == 4
    assert [s.reason for s in found.skipped] == ["file not found"]


def test_regression_manifest_needs_numbers(tmp_path):
    write_images(tmp_path / "imgs", {"x": 2})
    (tmp_path / "m.csv").write_text("path,target\nimgs/x/x_000.png,1.5\nimgs/x/x_001.png,oops\n")
    with pytest.raises(CnnlabError, match="'oops' is not a number"):
        scan(tmp_path / "m.csv", task="regression")


@pytest.mark.parametrize("layout,message", [
    ({"only": 3}, "needs at least two"),
    ({}, "no images found"),
])
def test_layout_errors(tmp_path, layout, message):
    write_images(tmp_path, layout)
    with pytest.raises(CnnlabError, match=message):
        scan(tmp_path)


def test_empty_class_folder_is_an_error(tmp_path):
    write_images(tmp_path, {"a": 2, "b": 2})
    (tmp_path / "empty").mkdir()
    with pytest.raises(CnnlabError, match="class folder .*empty.* has no images"):
        scan(tmp_path)


def test_missing_dataset_is_an_error(tmp_path):
    with pytest.raises(CnnlabError, match="dataset not found"):
        scan(tmp_path / "nope")
