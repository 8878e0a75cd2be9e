"""The run marker and the run lock (src/cnnlab/ownership.py)."""
import json
import os
import signal
import time

import pytest

from cnnlab import ownership
from cnnlab.errors import RunBusy


@pytest.fixture
def no_wait(monkeypatch):
    monkeypatch.setattr(ownership, "ACQUIRE_SECONDS", 0.0)


def test_a_second_writer_is_refused_naming_the_holder(tmp_path, no_wait):
    with ownership.RunLock(tmp_path):
        held = ownership.holder(tmp_path)
        assert held is not None and held.pid == os.getpid() and held.role == "training"
        assert ownership.busy_elsewhere(tmp_path) is None  # this process may read what it writes
        with pytest.raises(RunBusy, match=f"being written by PID {os.getpid()} \\(training\\)"):
            with ownership.RunLock(tmp_path):
                pass
    assert ownership.holder(tmp_path) is None
    assert (tmp_path / ownership.LOCK).read_bytes() == b""  # a released lock names no one
    with ownership.RunLock(tmp_path):  # and can be taken again
        pass


def test_probing_creates_nothing(tmp_path):
    assert ownership.holder(tmp_path) is None and list(tmp_path.iterdir()) == []


def test_a_forked_child_does_not_keep_the_lock_after_its_parent_lets_go(tmp_path, no_wait):
    started, ready = os.pipe()
    with ownership.RunLock(tmp_path):
        child = os.fork()
        if child == 0:  # a DataLoader worker, say: lives on after the parent releases
            os.write(ready, b"1")  # os.fork has returned here: the fork handlers have run
            time.sleep(30)
            os._exit(0)
        assert os.read(started, 1) == b"1"
    try:
        assert ownership.holder(tmp_path) is None
        with ownership.RunLock(tmp_path):
            pass
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        os.close(started), os.close(ready)


def test_files_are_created_as_open_creates_them(tmp_path):
    before = os.umask(0o027)
    try:
        with ownership.RunLock(tmp_path):
            pass
        ownership.write_marker(tmp_path)
    finally:
        os.umask(before)
    assert {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == {ownership.LOCK: 0o640,
                                                                               ownership.MARKER: 0o640}


def test_only_cnnlab_s_own_marker_counts(tmp_path):
    marker = ownership.write_marker(tmp_path)
    assert ownership.read_marker(tmp_path) == marker and len(marker["run_id"]) == 32
    assert ownership.write_marker(tmp_path)["run_id"] != marker["run_id"]
    for text in ("x: 1\n", "{}", json.dumps({**marker, "format": "other"}),
                 json.dumps({**marker, "schema_version": "1"}), json.dumps({**marker, "run_id": "../x"}), "\xff"):
        (tmp_path / ownership.MARKER).write_text(text, encoding="latin-1")
        assert ownership.read_marker(tmp_path) is None, text
    (tmp_path / ownership.MARKER).unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ownership.write_marker(elsewhere)
    (tmp_path / ownership.MARKER).symlink_to(elsewhere / ownership.MARKER)
    assert ownership.read_marker(tmp_path) is None
