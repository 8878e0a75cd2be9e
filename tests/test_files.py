"""Atomic writes (src/cnnlab/files.py): every file gets the mode a plain open() gives under the umask."""
import os

import pytest
import torch

from cnnlab import files, rundir


def _written(folder):
    files.write_json(folder / "a.json", {"x": 1.0})
    rundir.write_csv(folder / "a.csv", ("path", "label"), [("x.png", "a")])
    rundir.save_weights(torch.nn.Linear(2, 2), folder / "model.safetensors")
    return {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()}


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)], ids=["022", "002", "077"])
def test_files_get_the_mode_open_gives_under_the_umask(tmp_path, umask, mode):
    before = os.umask(umask)
    try:
        modes = _written(tmp_path)
        with open(tmp_path / "plain", "w"):
            pass
    finally:
        os.umask(before)
    assert modes == {"a.json": mode, "a.csv": mode, "model.safetensors": mode}
    assert (tmp_path / "plain").stat().st_mode & 0o777 == mode  # the reference: open() itself
