"""Hostile model files, crafted at test time (tests/test_security.py and benchmarks/faults.py use them)."""
from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

import torch

CHUNK = 64 << 20  # 64 MiB of zeros deflate to ~64 KB; after a full flush every chunk deflates to the same bytes


class Payload:
    """Unpickling this creates ``marker``: proof that code from the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def pickle_payload_pth(path: Path, marker: Path) -> Path:
    """A torch.save zip whose pickle calls Path.touch(marker) when loaded without weights_only."""
    torch.save({"state_dict": {"w": torch.zeros(2)}, "evil": Payload(marker)}, path)
    return path


def raw_pickle(path: Path, marker: Path) -> Path:
    """A bare pickle stream (e.g. renamed .safetensors) with the same payload."""
    path.write_bytes(pickle.dumps({"evil": Payload(marker)}))
    return path


def _zip(path: Path, entries: list[tuple[str, int, bytes, int, int]]) -> None:
    """Write a zip by hand: (name, method, data as stored, uncompressed size, crc) per entry, zip64 sizes."""
    out, central = io.BytesIO(), []
    for name, method, data, size, crc in entries:
        offset = out.tell()
        raw = name.encode()
        extra = struct.pack("<HHQQ", 1, 16, size, len(data))
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, method, 0, 0x21, crc, 0xFFFFFFFF, 0xFFFFFFFF,
                              len(raw), len(extra)) + raw + extra)
        out.write(data)
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, method, 0, 0x21, crc, 0xFFFFFFFF,
                                   0xFFFFFFFF, len(raw), len(extra), 0, 0, 0, 0, offset) + raw + extra)
    start = out.tell()
    for c in central:
        out.write(c)
    end = out.tell()
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), end - start, start, 0))
    path.write_bytes(out.getvalue())


def zip_bomb(path: Path, gib: int) -> Path:
    """A torch.save archive whose tensor record is a DEFLATE stream of ``gib`` GiB of zeros (~1 MB a GiB)."""
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(4)}, buf)
    with zipfile.ZipFile(buf) as zf:
        entries = [(i.filename, zf.read(i)) for i in zf.infolist()]
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = packer.compress(bytes(CHUNK)) + packer.flush(zlib.Z_FULL_FLUSH)
    n = (gib << 30) // CHUNK
    bomb = chunk * n + zlib.compressobj(9, zlib.DEFLATED, -15).flush(zlib.Z_FINISH)
    out = []
    for name, data in entries:
        if name.endswith("/data/0"):
            out.append((name, zipfile.ZIP_DEFLATED, bomb, n * CHUNK, 0))
        else:
            out.append((name, zipfile.ZIP_STORED, data, len(data), zlib.crc32(data)))
    _zip(path, out)
    return path


def oversized_entry(path: Path) -> Path:
    """A STORED torch.save archive whose tensor record claims far more bytes than the file holds."""
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(4)}, buf)
    with zipfile.ZipFile(buf) as zf:
        entries = [(i.filename, zf.read(i)) for i in zf.infolist()]
    _zip(path, [(n, zipfile.ZIP_STORED, d, (1 << 40) if n.endswith("/data/0") else len(d), zlib.crc32(d))
                for n, d in entries])
    return path


def safetensors_file(path: Path, header: dict, data: bytes, header_len: int | None = None) -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if header_len is None else header_len) + raw + data)
    return path


def overlapping_safetensors(path: Path) -> Path:
    return safetensors_file(path, {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                                   "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, bytes(24))


def huge_header_safetensors(path: Path) -> Path:
    return safetensors_file(path, {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, bytes(4),
                            header_len=10 ** 12)


def torchscript_archive(path: Path) -> Path:
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(path))
    return path


def deep_safetensors(path: Path) -> Path:
    """A header of 200 KB of nested brackets: Python's JSON parser recurses once a bracket."""
    raw = b"[" * 100_000 + b"]" * 100_000
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    return path


def long_integer_safetensors(path: Path) -> Path:
    """A shape holding a 6,001-digit integer: past Python's limit on converting integer strings."""
    raw = b'{"a": {"dtype": "F32", "shape": [' + b"9" * 6001 + b'], "data_offsets": [0, 4]}}'
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(4))
    return path


def deep_metadata_safetensors(path: Path) -> Path:
    """A well-formed header whose cnnlab metadata string is 10,000 nested brackets of JSON."""
    nested = "[" * 5000 + "]" * 5000
    return safetensors_file(path, {"__metadata__": {"cnnlab": nested},
                                   "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, bytes(4))
