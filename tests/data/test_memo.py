"""The decoded images of a folder are kept in the process: a second run on the same files decodes nothing, and a
changed file, a changed setting or another run's changes to its own copy never leak into the next run."""
import os

import torch
from PIL import Image

from cnnlab.data import memo
from test_cache import _pixels, _prepared, data, decodes  # noqa: F401  (fixtures)


def test_a_second_run_on_the_same_files_decodes_nothing_and_gets_the_same_pixels(data, decodes):  # noqa: F811
    first = _prepared(data, "memory")
    assert decodes[0] == 25
    again = _prepared(data, "memory")
    assert decodes[0] == 25
    assert again.records == first.records
    assert [(s.path.name, s.reason) for s in again.skipped] == [(s.path.name, s.reason) for s in first.skipped]
    for split in ("train", "val", "test"):
        assert torch.equal(_pixels(again, split), _pixels(first, split))


def test_a_run_that_writes_into_its_images_leaves_the_next_runs_alone(data, decodes):  # noqa: F811
    first = _prepared(data, "memory")
    before = _pixels(first, "train").clone()
    first.datasets["train"].images.fill_(7)
    again = _prepared(data, "memory")
    assert decodes[0] == 25
    assert torch.equal(_pixels(again, "train"), before)


def test_a_changed_file_or_setting_decodes_again(data, decodes):  # noqa: F811
    first = _prepared(data, "memory")
    path = sorted((data / "b").glob("*.png"))[0]
    Image.new("RGB", (12, 12), (255, 0, 0)).save(path)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    changed = _prepared(data, "memory")
    assert decodes[0] == 50
    split = next(r[2] for r in changed.records if r[0] == str(path))
    row = [r[0] for r in changed.records if r[2] == split].index(str(path))
    red = _pixels(changed, split)[row]
    assert red[0].min() == 255 and red[1].max() == 0 and red[2].max() == 0  # the new file's pixels, not the bars
    assert not torch.equal(_pixels(first, split)[row], red)
    _prepared(data, "memory", input_size=16)
    assert decodes[0] == 75


def test_the_oldest_folder_is_dropped_past_the_limit(tmp_path, data, decodes, monkeypatch):  # noqa: F811
    monkeypatch.setattr(memo, "MAX_BYTES", 25 * 3 * 12 * 12 + 100)  # room for one folder's images
    _prepared(data, "memory")
    _prepared(data, "memory", input_size=10)
    assert memo.held() == 1
    _prepared(data, "memory")
    assert decodes[0] == 75  # the first was dropped for the second, so it decodes again
    memo.forget()
    monkeypatch.setattr(memo, "MAX_BYTES", 25 * 3 * 12 * 12 - 1)  # one folder's rows no longer fit
    _prepared(data, "memory")
    assert memo.held() == 0 and decodes[0] == 100
