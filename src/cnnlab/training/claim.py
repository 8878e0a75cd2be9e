"""Taking a run directory to write: only a new folder, an empty one, or one of cnnlab's own runs, never
one that holds the training data or lies inside it, and only while no other process writes it.

``--overwrite`` empties a folder only where cnnlab can prove the folder is its run (``rundir.is_run``:
its marker, or a complete run written before markers), and then removes only the entries cnnlab
writes: a user's own file in a run folder stays (it is named, and nothing cnnlab reads can be stale
under a name it does not write). Every refusal comes before anything is created, changed or removed.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Iterator, Optional

from cnnlab import ownership, rundir
from cnnlab.errors import RunDirError

log = logging.getLogger(__name__)


def _refuse_overlap(out: Path, data: Optional[Path], overwrite: bool) -> None:
    """The run directory and the data it trains on never overlap, whichever holds the other."""
    if data is None:
        return
    o, d = out.resolve(), data.resolve()
    if o == d or o in d.parents:
        why = ": --overwrite would remove it" if overwrite else ""
        raise RunDirError(f"--out {out} holds the training data {data}{why}; choose another --out "
                          f"(nothing was changed)")
    if d in o.parents:
        raise RunDirError(f"--out {out} lies inside the training data {data}, where the run would be read as data: "
                          f"choose an --out outside it (nothing was changed)")


def _refuse_foreign(out: Path, data: Optional[Path], overwrite: bool) -> None:
    """Refuse a folder that overlaps the data, or is neither new, empty nor a cnnlab run: nothing of the
    user's is replaced or removed."""
    _refuse_overlap(out, data, overwrite)
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir():
        raise RunDirError(f"--out {out} is a file, not a folder: choose another --out (nothing was changed)")
    if rundir.is_run(out):
        return
    # Not a run: any entry, a config.yaml included, may be the user's, and a run's files would replace it.
    foreign = sorted(p.name for p in out.iterdir() if p.name not in (ownership.MARKER, ownership.LOCK))
    if foreign:
        what = "--overwrite replaces only a cnnlab run directory" if overwrite else \
            "cnnlab writes a run only into a new or empty folder"
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise RunDirError(f"{out} is not a cnnlab run (it has no {ownership.MARKER} marker) and holds {shown}: "
                          f"{what}; choose another --out (nothing was changed)")


@contextlib.contextmanager
def fresh(out: Path, data: Optional[Path], overwrite: bool) -> Iterator[None]:
    """Hold ``out`` for a new run: checked, locked, emptied of a previous run (with ``overwrite``), marked."""
    out = Path(out)
    _refuse_foreign(out, data, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    with ownership.RunLock(out):
        _refuse_foreign(out, data, overwrite)  # again under the lock: another process may have written meanwhile
        if rundir.holds_run(out) and not overwrite:
            raise RunDirError(f"{out} already holds a run: choose another --out, continue it with --resume, or "
                              f"replace it with --overwrite (overwrite=True in Python)")
        started, proven = rundir.holds_run(out), rundir.is_run(out)
        # The new run's marker (a new id) first: a kill while the old run is removed leaves a provable run.
        ownership.write_marker(out)
        # Nothing of the old run may survive: an old export, evaluation or report would describe another model.
        # (A run that failed before its inputs were written is emptied too, without a word.)
        removed, kept = rundir.empty_run(out) if proven else (0, [])
        if started:
            log.info(f"--overwrite: removed the previous run in {out} ({removed} entries)"
                     + (f"; kept {len(kept)} entries cnnlab did not write: {', '.join(kept[:3])}" if kept else ""))
        yield


@contextlib.contextmanager
def resuming(out: Path) -> Iterator[None]:
    """Hold the run ``out`` to continue it: locked; a run from before markers gets its marker."""
    out = Path(out)
    if not out.is_dir() or not rundir.holds_run(out):
        raise RunDirError(f"nothing to resume in {out}: it holds no cnnlab run (start it with cnnlab train DATA "
                          f"--out {out})")
    with ownership.RunLock(out):
        if ownership.read_marker(out) is None:
            ownership.write_marker(out)
        yield
