"""Which folders are cnnlab's runs, and which process is writing one.

- The marker, RUN/.cnnlab-run: a small JSON file (its format name, a schema version and a random run id)
  that training writes into a run directory before anything else. cnnlab empties a folder only where it
  finds this marker (or, for a run written before markers existed, the complete set of a run's input
  files: ``rundir.is_run``). A name that any project may have, such as config.yaml, proves nothing.
- The lock, RUN/.cnnlab-lock: an OS file lock (``flock``) held by the one process that writes the run,
  with its PID in the file. The kernel releases it when that process ends in any way, ``kill -9``
  included, so it is never stale. Readers probe it without waiting and without creating anything.

No torch here: the CLI asks these questions before it imports anything heavy.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from cnnlab import files
from cnnlab.errors import RunBusy, RunDirError

MARKER, LOCK = ".cnnlab-run", ".cnnlab-lock"
MARKER_FORMAT, MARKER_SCHEMA = "cnnlab-run", 1
# A reader's probe holds a shared lock for microseconds; a writer that meets one tries again for this
# long before it calls the run busy. A second writer is still refused within this time.
ACQUIRE_SECONDS = 1.0
_RETRY_SECONDS = 0.02
_held: set[int] = set()  # the lock files' descriptors this process holds
log = logging.getLogger(__name__)


def write_marker(folder: Union[str, Path]) -> dict:
    """RUN/.cnnlab-run for a new run: a fresh run id."""
    marker = {"format": MARKER_FORMAT, "schema_version": MARKER_SCHEMA, "run_id": uuid.uuid4().hex,
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    files.write_json(Path(folder) / MARKER, marker)
    return marker


def read_marker(folder: Union[str, Path]) -> Optional[dict]:
    """The folder's marker when it is a valid one (a regular file of this format), else None."""
    path = Path(folder) / MARKER
    if path.is_symlink() or not path.is_file():
        return None
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("format") != MARKER_FORMAT:
        return None
    version, run_id = marker.get("schema_version"), marker.get("run_id")
    if type(version) is not int or version < 1:
        return None
    if not isinstance(run_id, str) or not re.fullmatch(r"[0-9a-f]{32}", run_id):
        return None
    return marker


@dataclass(frozen=True)
class Holder:
    """Who holds a run's lock, as its lock file says."""

    pid: Optional[int]
    host: str = ""
    role: str = "training"

    def __str__(self) -> str:
        who = f"PID {self.pid}" if self.pid else "another process"
        where = f" on {self.host}" if self.host and self.host != socket.gethostname() else ""
        return f"{who}{where} ({self.role})"

    def is_this_process(self) -> bool:
        return self.pid == os.getpid() and self.host in ("", socket.gethostname())


def _read_holder(fd: int) -> Holder:
    # The holder writes its PID just after it takes the lock: an empty file may be a moment early.
    for _ in range(5):
        try:
            info = json.loads(os.pread(fd, 4096, 0) or b"null")
        except (OSError, ValueError):
            info = None
        if isinstance(info, dict):
            pid = info.get("pid")
            return Holder(pid if type(pid) is int else None, str(info.get("host", "")),
                          str(info.get("role", "training")))
        time.sleep(_RETRY_SECONDS)
    return Holder(None)


def holder(folder: Union[str, Path]) -> Optional[Holder]:
    """The process writing ``folder`` now, or None. Takes nothing and creates nothing."""
    try:
        fd = os.open(Path(folder) / LOCK, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # no lock file: nothing has written here since locks existed
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd)
        except OSError:  # a filesystem without locks: no writer can be known
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def busy_elsewhere(folder: Union[str, Path]) -> Optional[Holder]:
    """The holder of ``folder``'s lock when it is another process (this one may read what it writes)."""
    found = holder(folder)
    return None if found is None or found.is_this_process() else found


class RunLock:
    """The write lock of one run directory, for the life of a ``with`` block; refused at once when taken."""

    def __init__(self, folder: Union[str, Path], role: str = "training") -> None:
        self.folder, self.role = Path(folder), role
        self._fd: Optional[int] = None

    def __enter__(self) -> "RunLock":
        try:
            fd = os.open(self.folder / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise RunDirError(f"cannot write in {self.folder}: {exc.strerror or exc}") from None
        deadline = time.monotonic() + ACQUIRE_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    found = _read_holder(fd)
                    os.close(fd)
                    raise RunBusy(f"{self.folder} is being written by {found}: wait for it to finish, or give "
                                  f"this run another --out") from None
                time.sleep(_RETRY_SECONDS)
            except OSError as exc:  # a filesystem without locks (some network and FUSE mounts)
                os.close(fd)
                log.warning(f"cannot lock {self.folder} ({exc.strerror or exc}): a second process writing it at "
                            f"the same time would not be noticed")
                return self
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "role": self.role}).encode(), 0)
        self._fd = fd
        _held.add(fd)
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            _held.discard(self._fd)
            os.ftruncate(self._fd, 0)  # no PID of a finished writer stays behind (and a no-op run changes no byte)
            os.close(self._fd)  # releases the lock
            self._fd = None


def _close_in_child() -> None:
    """A forked child (a DataLoader worker) closes its copy of the lock's descriptor: the lock then ends
    with the process that took it, not with the last of its children. Closing does not unlock it."""
    for fd in list(_held):
        try:
            os.close(fd)
        except OSError:
            pass
    _held.clear()


os.register_at_fork(after_in_child=_close_in_child)
