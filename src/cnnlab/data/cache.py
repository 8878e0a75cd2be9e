"""The decoded-image cache on disk: every image decoded and resized once into one flat uint8 (N, C, H, W) file,
memory-mapped by each epoch, which then reads slices and decodes nothing.

Like the torch hub and Hugging Face caches it lives in one folder (``$CNNLAB_CACHE``, else
``$XDG_CACHE_HOME/cnnlab``, else ``~/.cache/cnnlab``), one entry per fingerprint of what decides its pixels:
the files (paths, sizes, modification times), the channels, size, interpolation and decoder, and this
module's format version. So repeated runs, seeds and experiment arms on the same data share one entry.

An entry is ``<fingerprint>.u8`` (the rows, one per scanned file; a skipped file's row stays zero) and
``<fingerprint>.json`` (fingerprint, shape, dtype, count, the data file's size and modification time, and the
skipped files' reasons). The JSON is written last, both by temp name + ``os.replace``, so a reader finds a
complete entry or none; loading checks the data file's size and time against the JSON before mapping it, and
anything that does not match is rebuilt. One process builds an entry at a time (a file lock), so the ranks of a
multi-process run, or two runs started together, decode once: the others wait and map it. A cache that cannot
be written (read-only, no space) is one log line, and the images are decoded from their files instead.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from filelock import FileLock

from cnnlab.data.datasets import decode_entries, map_images
from cnnlab.data.sources import Entry, Skipped

log = logging.getLogger(__name__)
ENV = "CNNLAB_CACHE"
FORMAT_VERSION = 1  # bump when the pixels a given file and setting produce change
FREE_MARGIN = 256 * 2**20  # left free on the cache's disk after the entry


def cache_root() -> Path:
    """``$CNNLAB_CACHE``, else ``$XDG_CACHE_HOME/cnnlab``, else ``~/.cache/cnnlab``."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "cnnlab"


@dataclass(frozen=True)
class Key:
    """What decides an entry's pixels."""

    channels: int
    size: tuple[int, int]
    interpolation: str
    decoder: str  # cpu, or cuda: nvJPEG's pixels differ from libjpeg-turbo's by a few levels

    def shape(self, n: int) -> tuple[int, int, int, int]:
        return n, self.channels, self.size[0], self.size[1]


def fingerprint(paths: Sequence[Path], key: Key) -> str:
    """A hash of every file's path, size and modification time, and of ``key`` and the format version."""
    h = hashlib.sha256(json.dumps([FORMAT_VERSION, key.channels, list(key.size), key.interpolation,
                                   key.decoder]).encode())
    for path in paths:
        try:
            st = os.stat(path)
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        h.update(f"{os.path.abspath(path)}\0{stamp}\n".encode())
    return h.hexdigest()[:32]


@dataclass
class Cached:
    """An entry mapped: every scanned file's row, and the files that were skipped (their rows unused)."""

    path: Path
    images: torch.Tensor
    ok: list[int]
    skipped: list[Skipped]


def _describes(meta, fp: str, shape: tuple[int, ...]) -> bool:
    return (isinstance(meta, dict) and meta.get("fingerprint") == fp and meta.get("shape") == list(shape)
            and meta.get("dtype") == "uint8" and meta.get("bytes") == math.prod(shape))


def _load(data: Path, meta_path: Path, fp: str, shape: tuple[int, ...], entries: Sequence[Entry]) -> Optional[Cached]:
    """The entry, if its JSON describes this fingerprint and shape and the data file is the one it describes."""
    try:
        meta = json.loads(meta_path.read_text())
        st = os.stat(data)
    except (OSError, ValueError):
        return None
    expected = math.prod(shape)
    if not _describes(meta, fp, shape):
        log.info(f"the image cache {data.name} does not match its description: rebuilding it")
        return None
    if st.st_size != expected or st.st_mtime_ns != meta.get("mtime_ns"):
        log.info(f"the image cache {data} changed since it was written ({st.st_size:,} bytes, "
                 f"{expected:,} expected): rebuilding it")
        return None
    try:
        bad = {int(i): str(reason) for i, reason in meta.get("skipped", []) if 0 <= int(i) < len(entries)}
    except (TypeError, ValueError):
        log.info(f"the image cache {data.name} does not match its description: rebuilding it")
        return None
    ok = [i for i in range(len(entries)) if i not in bad]
    return Cached(data, map_images(data, shape), ok, [Skipped(entries[i].path, r) for i, r in bad.items()])


def _fsync_replace(tmp: Path, final: Path) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)


def _build(root: Path, fp: str, key: Key, entries: Sequence[Entry], device) -> Cached:
    """Decode every entry into a new entry's rows (a temp file, then renamed); raises OSError."""
    shape = key.shape(len(entries))
    need = math.prod(shape)
    free = shutil.disk_usage(root).free
    if need + FREE_MARGIN > free:
        raise OSError(f"{need / 2**20:,.0f} MB needed, {free / 2**20:,.0f} MB free")
    tmp = root / f".{fp}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "wb") as f:
            if hasattr(os, "posix_fallocate"):  # no space: an error now, not SIGBUS mid-write through the map
                os.posix_fallocate(f.fileno(), 0, need)
            else:
                f.truncate(need)
        rows = np.memmap(tmp, dtype=np.uint8, mode="r+", shape=shape)
        _, ok, bad = decode_entries(entries, key.channels, key.size, keep=False, interpolation=key.interpolation,
                                    into=torch.from_numpy(rows), device=device)
        rows.flush()
        del rows
        data = root / f"{fp}.u8"
        _fsync_replace(tmp, data)
    except BaseException:
        tmp.unlink(missing_ok=True)  # ours: named by this process just now
        raise
    where = {str(s.path): s.reason for s in bad}
    meta = {"format": FORMAT_VERSION, "fingerprint": fp, "shape": list(shape), "dtype": "uint8", "count": len(entries),
            "bytes": need, "mtime_ns": os.stat(data).st_mtime_ns,
            "skipped": [[i, where[str(e.path)]] for i, e in enumerate(entries) if str(e.path) in where]}
    meta_tmp = root / f".{fp}.{os.getpid()}.{uuid.uuid4().hex[:8]}.json.tmp"
    meta_tmp.write_text(json.dumps(meta))
    _fsync_replace(meta_tmp, root / f"{fp}.json")
    return Cached(data, map_images(data, shape), ok, bad)


def cached_images(entries: Sequence[Entry], key: Key, device=None) -> Optional[Cached]:
    """The entries' images from the cache, building its entry first when there is none that matches; None (one
    log line) when the cache cannot be written, and the caller decodes the files instead."""
    if not entries:
        return None
    root = cache_root() / "images"
    fp = fingerprint([e.path for e in entries], key)
    data, meta, shape = root / f"{fp}.u8", root / f"{fp}.json", key.shape(len(entries))
    found = _load(data, meta, fp, shape, entries)  # a complete entry needs no lock (and a read-only cache works)
    if found is not None:
        log.info(f"images from the image cache {data} (decoded once before)")
        return found
    try:
        root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(root / f"{fp}.lock")):
            found = _load(data, meta, fp, shape, entries)  # another process may have built it meanwhile
            if found is not None:
                return found
            log.info(f"decoding {len(entries):,} images once into the image cache {data}")
            return _build(root, fp, key, entries, device)
    except OSError as exc:
        log.warning(f"the image cache in {root} cannot be written ({exc.strerror or exc}): decoding the images from "
                    f"their files each epoch instead (set {ENV} to a writable folder with room to use the cache)")
        return None
