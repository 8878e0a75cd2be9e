"""The decoded images of the last few data folders, kept in this process (the memory mode's counterpart of the
image cache on disk).

Experiment arms, seeds, ``compare`` and notebooks train again and again on one folder in one process; decoding
its files was most of a short run (2.6 s of a 4.5 s two-epoch run on ``mnist-5k``). Entries are keyed by the
disk cache's fingerprint (every file's path, size and modification time, the channels, size, interpolation and
decoder), so a changed, added or removed file decodes again. The stored tensor is never handed out: callers
index it, which copies, so no run can change another's pixels. At most ``MAX_BYTES`` are held, the oldest
entry dropped first; a folder that could not fit is decoded without even fingerprinting it.
"""
from __future__ import annotations

import math
import threading
from collections import OrderedDict
from typing import Callable, Sequence

import torch

from cnnlab.data.cache import Key, fingerprint
from cnnlab.data.sources import Entry, Skipped

MAX_BYTES = 64 * 2**20  # held for the process's life beside the run's own copies: small sets only
Decoded = tuple[torch.Tensor, list[int], list[Skipped]]  # as decode_entries gives them: rows, usable indices, skipped

_held: "OrderedDict[str, Decoded]" = OrderedDict()
_lock = threading.Lock()


def _bytes(d: Decoded) -> int:
    return d[0].numel() * d[0].element_size()


def remembered(entries: Sequence[Entry], key: Key, decode: Callable[[], Decoded]) -> Decoded:
    """``decode()``'s result for these files and settings: from memory when this process decoded them before."""
    if math.prod(key.shape(len(entries))) > MAX_BYTES:  # uint8 rows: too large to keep, so not worth the stats
        return decode()
    fp = fingerprint([e.path for e in entries], key)
    with _lock:
        found = _held.get(fp)
        if found is not None:
            _held.move_to_end(fp)
            return found
    done = decode()
    with _lock:
        _held[fp] = done
        while sum(_bytes(d) for d in _held.values()) > MAX_BYTES:
            _held.popitem(last=False)
    return done


def forget() -> None:
    """Drop every held entry (tests; a notebook that wants its memory back)."""
    with _lock:
        _held.clear()


def held() -> int:
    """How many entries are held (tests)."""
    return len(_held)
