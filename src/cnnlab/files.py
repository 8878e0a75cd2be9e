"""Every file cnnlab writes is atomic and strictly valid; every model file it reads is checked first.

Writing: a temp file in the same folder, flushed and fsynced, then ``os.replace`` onto the name, so a
kill or a full disk at any moment leaves either the old file or the new one, never half of one. JSON
never holds ``NaN`` or ``Infinity`` (they become ``null``).

Reading: a weights file or checkpoint is checked before anything in it is inflated or unpickled:
- a PyTorch file must be the zip archive ``torch.save`` writes: STORED entries only (``torch.save``
  compresses nothing, so a DEFLATE entry can only be a zip bomb), declared sizes within the file's
  size, and no TorchScript code; then ``torch.load(weights_only=True)``, explicitly, so that
  ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` changes nothing;
- a safetensors header must be a bounded JSON table of tensors whose byte ranges tile the data
  section exactly;
- an ONNX file's external data must stay inside the file's own folder.
Each failure is a ``WeightsError``: one line, exit code 2.
"""
from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import secrets
import struct
import zipfile
from pathlib import Path
from typing import Any, Iterator, Union

from cnnlab.artifacts import Artifact
from cnnlab.errors import CnnlabError, WeightsError

PathLike = Union[str, Path]
MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024  # the format's own limit
MAX_JSON_INT_DIGITS = 20  # sizes and offsets are 64-bit: 18,446,744,073,709,551,615 has 20 digits
SAFETENSORS_DTYPES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2,
                      "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


# ----------------------------------------------------------------------------- writing
def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a folder be opened for fsync
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _disk_error(exc: OSError, path: Path) -> CnnlabError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return CnnlabError(f"no space left on the device while writing {path}; the previous file is intact. "
                           f"Free some space and run the command again (a training run continues with "
                           f"cnnlab train --resume --out RUN)")
    return CnnlabError(f"could not write {path}: {exc.strerror or exc}")


def _new_temp(path: Path) -> Path:
    """An empty new file beside ``path``, created as a plain ``open()`` creates one: mode 0o666 less the
    umask, and the folder's default ACL (``mkstemp`` would make it 0600, unreadable to anyone else)."""
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666))
            return tmp
        except FileExistsError:
            continue


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path`` for a writer that takes a file name; on success it replaces
    ``path`` (after an fsync), on any failure it is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _new_temp(path)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        raise _disk_error(exc, path) from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes(path: PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
    return Path(path)


def write_text(path: PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def save_figure(fig, path: PathLike, **kwargs) -> Path:
    """A matplotlib figure saved atomically, in the format of ``path``'s suffix."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", **kwargs)
    return path


def finite(obj: Any) -> Any:
    """The object with every non-finite float (NaN, +-inf) replaced by None, for strict JSON (an artifact
    as the document it writes)."""
    if isinstance(obj, Artifact):
        return finite(obj.to_json())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def dumps(obj: Any, indent: int | None = 2) -> str:
    """Strict JSON (RFC 8259): NaN and infinities are written as null, never as bare tokens."""
    return json.dumps(finite(obj), indent=indent, allow_nan=False)


def write_json(path: PathLike, obj: Any) -> Path:
    return write_text(path, dumps(obj) + "\n")


# ----------------------------------------------------------------------------- reading model files
def _refuse(path: Path, why: str) -> WeightsError:
    return WeightsError(f"{path} is not a safe model file: {why}")


def check_torch_file(path: PathLike) -> None:
    """Refuse anything but a plain ``torch.save`` zip archive, before a byte of it is inflated."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        _refuse_not_zip(path)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise _refuse(path, f"a damaged zip archive ({exc})") from None
    names = [i.filename for i in infos]
    if any(n.endswith(("/code/", "constants.pkl")) or "/code/" in n for n in names):
        raise _refuse(path, "a TorchScript archive (it carries code); cnnlab never runs TorchScript files it is "
                            "given: pass a state dict (.pth) or .safetensors file")
    _check_entries(path, infos)
    if not any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        raise _refuse(path, "a zip archive without the data.pkl of a torch.save file")


def _refuse_not_zip(path: Path) -> None:
    with open(path, "rb") as fh:
        head = fh.read(1)
    if head == b"\x80":  # a pickle protocol header
        raise _refuse(path, "a bare pickle stream (the legacy torch.save format); re-save it with a current "
                            "PyTorch, or convert it to .safetensors")
    raise _refuse(path, "not a PyTorch zip archive (torch.save) nor a .safetensors file")


def _check_entries(path: Path, infos: list[zipfile.ZipInfo]) -> None:
    """Every entry STORED (torch.save compresses nothing), and the sizes they declare within the file's."""
    size = path.stat().st_size
    total = 0
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED:
            raise _refuse(path, f"entry '{info.filename}' is compressed (torch.save writes none; a compressed "
                                f"entry is how a zip bomb inflates)")
        if info.file_size != info.compress_size or info.file_size > size:
            raise _refuse(path, f"entry '{info.filename}' claims {info.file_size:,} bytes in a file of {size:,}")
        total += info.file_size
    if total > size:
        raise _refuse(path, f"its entries claim {total:,} bytes in a file of {size:,}")


def load_torch(path: PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load`` after ``check_torch_file``, with ``weights_only=True`` always passed explicitly."""
    import torch

    path = Path(path)
    check_torch_file(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=True)
    except Exception as exc:  # noqa: BLE001 - the unpickler's refusals and any damage: one line
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
        refusal = re.search(r"WeightsUnpickler error: ([^\n]*)", text)
        if refusal:
            raise _refuse(path, f"it asks to run code or build objects, which cnnlab never does "
                                f"({refusal.group(1).strip()[:200]})") from None
        first = (text.strip().splitlines() or [type(exc).__name__])[0]
        raise _refuse(path, f"it does not load as plain tensors and containers ({first[:200]})") from None


def loads_untrusted(raw: Union[bytes, str], path: Path, what: str = "header") -> Any:
    """JSON read from a model file, whatever its bytes: the value, or one ``WeightsError``. Python's parser would
    otherwise raise RecursionError on a few thousand nested brackets, ValueError on an integer of more than
    4,300 digits, and accept NaN."""

    def bounded_int(text: str) -> int:
        if len(text.lstrip("-")) > MAX_JSON_INT_DIGITS:
            raise _refuse(path, f"its {what} holds an integer of {len(text.lstrip('-')):,} digits")
        return int(text)

    def no_constant(text: str) -> None:
        raise _refuse(path, f"its {what} holds {text}, which JSON does not allow")

    try:
        return json.loads(raw, parse_int=bounded_int, parse_constant=no_constant)
    except RecursionError:
        raise _refuse(path, f"its {what} nests too deep to read (a safetensors header nests 3 deep)") from None
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        raise _refuse(path, f"its {what} is not JSON (not a safetensors file?)") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _tensor_span(path: Path, name: str, meta: Any, data: int) -> tuple[int, int]:
    """One tensor's entry, checked against the format: its dtype, shape and byte range."""
    if not (isinstance(meta, dict) and set(meta) == {"dtype", "shape", "data_offsets"} and isinstance(meta["shape"], list)
            and all(_is_int(d) and d >= 0 for d in meta["shape"]) and isinstance(meta["data_offsets"], list)
            and len(meta["data_offsets"]) == 2 and all(map(_is_int, meta["data_offsets"]))):
        raise _refuse(path, f"tensor '{name[:100]}' has a malformed entry")
    dtype, shape, (begin, end) = meta["dtype"], meta["shape"], meta["data_offsets"]
    if dtype not in SAFETENSORS_DTYPES:
        raise _refuse(path, f"tensor '{name[:100]}' has the unknown dtype {str(dtype)[:40]!r}")
    if not 0 <= begin <= end <= data:
        raise _refuse(path, f"tensor '{name[:100]}' lies outside the file ({begin}..{end} of {data} bytes)")
    if end - begin != math.prod(shape) * SAFETENSORS_DTYPES[dtype]:
        raise _refuse(path, f"tensor '{name[:100]}' claims {end - begin} bytes for shape {shape} of {dtype}")
    return begin, end


def check_safetensors(path: PathLike) -> None:
    """The header, before safetensors or anything else reads it: a bounded length, JSON that cannot blow up the
    parser, string metadata, known dtypes, whole non-negative sizes, byte ranges that tile the data exactly.
    The one header check every reader goes through (``load_safetensors``, ``rundir.read_weights_metadata``)."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) < 8:
            raise _refuse(path, "shorter than a safetensors header")
        (n,) = struct.unpack("<Q", raw)
        if n > min(MAX_SAFETENSORS_HEADER, size - 8):
            raise _refuse(path, f"its header claims {n:,} bytes in a file of {size:,} (not a safetensors file?)")
        header = loads_untrusted(fh.read(n), path)
    if not isinstance(header, dict):
        raise _refuse(path, "its header is not a table of tensors")
    metadata = header.get("__metadata__", {})
    if not (isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())):
        raise _refuse(path, "its __metadata__ is not a table of strings")
    data = size - 8 - n
    spans = sorted((*_tensor_span(path, name, meta, data), name) for name, meta in header.items()
                   if name != "__metadata__")
    position = 0
    for begin, end, name in spans:
        if begin != position:
            raise _refuse(path, f"tensor '{name[:100]}' overlaps another or leaves a gap at byte {position}")
        position = end
    if position != data:
        raise _refuse(path, f"its tensors cover {position} of the {data} data bytes")


def load_safetensors(path: PathLike) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    check_safetensors(path)
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise _refuse(Path(path), str(exc).splitlines()[0][:200]) from None


def check_onnx(path: PathLike):
    """Refuse an ONNX file whose external data points outside its folder (../, an absolute path, a link); return
    the model (``onnx.ModelProto``, external data not loaded)."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf's errors: one line
        raise _refuse(path, f"not a readable ONNX model ({str(exc).splitlines()[0][:160]})") from None
    folder = path.parent.resolve()
    for tensor in _get_all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = {e.key: e.value for e in tensor.external_data}.get("location", "")
        target = (path.parent / location)
        if (not location or Path(location).is_absolute() or ".." in Path(location).parts
                or target.is_symlink() or not target.resolve().is_relative_to(folder)):
            raise _refuse(path, f"tensor '{tensor.name}' reads external data from '{location}', outside {folder}")
    return model
