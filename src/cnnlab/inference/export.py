"""``cnnlab export RUN --format onnx|torchscript``: a deployable file, ``export.json`` beside it (what it takes and
gives: ``cnnlab.inference.contract``), and a parity check against PyTorch at export time.

The ONNX graph takes uint8 images (N, H, W, C) of any size and does the rest of ``cnnlab predict`` itself: the
antialiased resize, the normalisation, the calibrated softmax (``cnnlab.inference.deployable``); ``client.py``
beside it runs it with numpy, Pillow and onnxruntime. The TorchScript file takes uint8 (N, C, H, W) at the model's
input size and returns logits (classification) or values (regression); the normalisation is inside it too.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from cnnlab import files
from cnnlab.errors import CnnlabError, WeightsError
from cnnlab import rundir
from cnnlab.inference.contract import CONTRACT, describe, layout, write_client
from cnnlab.rundir import CLASSES, PREPROCESSING, Run
from cnnlab.catalog.names import ExportFormat, Task, listed

log = logging.getLogger(__name__)
PARITY_TOLERANCE = 1e-4
# Other sizes: ONNX Runtime's 8-bit resize and PyTorch's differ by one level in 0-4% of the pixels of noise
# images (``Deployable.resize``); the check is there for an exporter that dropped the antialias (~0.04 off).
RESIZED_TOLERANCE = 1e-3


@dataclass
class Exported:
    path: Path
    format: str
    max_abs_diff: float
    max_abs_diff_other_sizes: Optional[float] = None  # ONNX: on images of other sizes, resized inside the graph


def _samples(run: Run, n: int = 4, size: Optional[tuple[int, int]] = None, nhwc: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    h, w = size or run.pre.size
    shape = (n, h, w, run.pre.channels) if nhwc else (n, run.pre.channels, h, w)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)


def other_sizes(run: Run) -> list[tuple[int, int]]:
    """A smaller and a larger, non-square size than the model's input: what the parity check resizes."""
    h, w = run.pre.size
    return [(h // 2 + 1, w // 3 + 1), (2 * h + 3, w + 5)]


def weights_sha256(run: Run) -> str:
    return hashlib.sha256(rundir.weights_path(run.path).read_bytes()).hexdigest()


def export_info(folder: Path) -> dict:
    """An export folder's export.json ({} when it has none)."""
    info = folder / rundir.EXPORT_INFO
    try:
        found = json.loads(info.read_text()) if info.is_file() else {}
    except (ValueError, OSError):  # damaged: as if absent, so "export it again"
        return {}
    return found if isinstance(found, dict) else {}


def check_current(run: Run, folder: Path) -> None:
    """Refuse an export made from other weights than the run's model.safetensors (trained again since)."""
    recorded = export_info(folder).get("weights_sha256")
    if recorded != weights_sha256(run):
        why = "records no weights hash" if recorded is None else "was made from other weights (trained again since?)"
        raise CnnlabError(f"the export in {folder} {why} than {rundir.weights_path(run.path)}: export it again with "
                          f"cnnlab export {run.path}")


def onnx_session(path: Path, threads: Optional[int] = None, model: Optional[bytes] = None):
    """An ONNX Runtime session, after checking that the file's external data stays inside its folder; ``model``:
    a graph made from that file once the caller checked it (``deployable.from_input_size``), to run instead."""
    import onnxruntime as ort

    if model is None:
        files.check_onnx(path)
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(model if model is not None else str(path), options, providers=["CPUExecutionProvider"])


def batch_session(run: Run, threads: Optional[int] = None):
    """ONNX Runtime on the run's export (made now when it has none), for uint8 (N, C, H, W) batches that cnnlab's
    decoder has already resized: ``OnnxPredictor``'s, so the server's. The graph from its input-size tensor on
    (``deployable.from_input_size``); an export of contract 1 takes such batches as it is. Returns the session
    and whether it wants them as NHWC (the whole graph: that tensor was not found)."""
    from cnnlab.inference.deployable import from_input_size

    path = run.export_dir() / rundir.ONNX
    if not path.is_file():
        path = export(run.path, "onnx").path
    graph = files.check_onnx(path)  # a hostile file is refused as such first
    check_current(run, path.parent)
    nhwc = layout(export_info(path.parent)) == "NHWC"
    cut = from_input_size(graph) if nhwc else None
    return onnx_session(path, threads, cut), nhwc and cut is None


def export(run_dir: Union[str, Path], fmt: str = "onnx", out: Optional[Union[str, Path]] = None) -> Exported:
    if fmt not in set(ExportFormat):
        raise CnnlabError(f"unknown export format '{fmt}'. Known: {listed(ExportFormat)}")
    run = Run.open(run_dir)
    model = run.load_model("cpu").eval()
    out_dir = Path(out) if out is not None else run.export_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    path, checks = (_onnx if fmt == ExportFormat.ONNX else _torchscript)(run, model, out_dir)
    _drop_old_preprocessing(run, out_dir)
    files.write_bytes(out_dir / CLASSES, (run.path / CLASSES).read_bytes())
    files.write_json(out_dir / rundir.EXPORT_INFO, describe(run, fmt, path, checks, weights_sha256(run)))
    return Exported(path, fmt, checks["max_abs_diff"], checks.get("max_abs_diff_other_sizes"))


def _worst(got: list[np.ndarray], expected, tolerance: float, what: str) -> float:
    expected = expected if isinstance(expected, tuple) else (expected,)
    diff = max(float(np.abs(g - e.numpy()).max()) for g, e in zip(got, expected))
    scale = max(1.0, *(float(e.abs().max()) for e in expected))  # logits of a few hundred: relative
    if not diff <= tolerance * scale:
        raise CnnlabError(f"exported model disagrees with PyTorch{f' {what}' if what else ''}: max abs diff "
                          f"{diff:.2e} > {tolerance:g}"
                          f"{f' x {scale:.3g}' if scale > 1 else ''}")
    return diff


def _onnx(run: Run, model, out_dir: Path) -> tuple[Path, dict]:
    """The graph of ``deployable``, checked at the input size (the server's batches) and at two others."""
    import onnxruntime as ort

    from cnnlab.inference.deployable import Deployable, onnx_bytes

    temperature = run.temperature() if run.task == Task.CLASSIFICATION else None
    reference = Deployable(model, temperature).eval()
    h, w = run.pre.size
    data = onnx_bytes(model, temperature, _samples(run, 2, (h + 3, w + 5), nhwc=True))
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])

    def check(x: torch.Tensor, tolerance: float, what: str) -> float:
        with torch.no_grad():
            expected = reference(x)
        return _worst(session.run(None, {"image": x.numpy()}), expected, tolerance, what)

    diff = check(_samples(run, nhwc=True), PARITY_TOLERANCE, f"at its input size {h}x{w}")
    resized = max(check(_samples(run, 2, size, nhwc=True), RESIZED_TOLERANCE, f"on images of {size[0]}x{size[1]}")
                  for size in other_sizes(run))
    path = files.write_bytes(out_dir / rundir.ONNX, data)
    write_client(out_dir)
    return path, {"max_abs_diff": diff, "max_abs_diff_other_sizes": resized,
                  "other_sizes_checked": [list(s) for s in other_sizes(run)]}


def _torchscript(run: Run, model, out_dir: Path) -> tuple[Path, dict]:
    x = _samples(run)
    with torch.no_grad():
        expected = model(x)
        traced = torch.jit.trace(model, x)
    buf = io.BytesIO()
    torch.jit.save(traced, buf)
    data = buf.getvalue()
    with torch.no_grad():  # the very bytes written below, from memory: torch.jit.load never sees a path
        got = torch.jit.load(io.BytesIO(data)).eval()(x).numpy()
    diff = _worst([got], expected, PARITY_TOLERANCE, "")
    return files.write_bytes(out_dir / rundir.TORCHSCRIPT, data), {"max_abs_diff": diff}


def _drop_old_preprocessing(run: Run, out_dir: Path) -> None:
    """An older export's copy of the run's preprocessing.json (its mean and std invited a second normalisation):
    removed when it is byte for byte the run's own, so provably cnnlab's copy; else left, with a warning."""
    old = out_dir / PREPROCESSING
    if not old.is_file() or old.resolve() == (run.path / PREPROCESSING).resolve():  # --out RUN itself: the original
        return
    if old.read_bytes() == (run.path / PREPROCESSING).read_bytes():
        old.unlink()
    else:
        log.warning(f"{old} is not cnnlab's copy of the run's preprocessing: left as it is, but export.json "
                    f"supersedes it (the normalisation is inside the model; do not apply it)")


def ensure_onnx(run_dir: Union[str, Path]) -> Optional[Path]:
    """The run's current ONNX export, made now (into RUN/export/, a few seconds, once) when it has none or a stale
    one: ``cnnlab serve --backend auto`` on the CPU, so that ONNX Runtime is measured against PyTorch without a
    ``cnnlab export`` first. None, with a log line, when it cannot be made (a read-only run directory, an operator
    the exporter refuses): the server then runs PyTorch, as it would have.

    On the CPU, ONNX Runtime runs a whole forward pass without Python's lock, where PyTorch's eager mode takes it
    back after each operator and, while the server's event loop is busy, waits for it each time: one image of
    cnn-small took 0.7-1.0 ms alone and 19-82 ms with a busy Python thread in PyTorch, 0.16-0.23 -> 5.7-5.9 ms in
    ONNX Runtime; ResNet-18 7-9x slower in PyTorch, 1.1-1.3x in ONNX Runtime (``benchmarks/serving.py --gil``)."""
    run = Run.open(run_dir)
    path = run.export_dir() / rundir.ONNX
    if path.is_file():
        try:
            check_current(run, path.parent)
            if export_info(path.parent).get("contract") == CONTRACT:
                return path
        except CnnlabError:
            pass  # made from other weights, or by an older cnnlab (fixed-size input): made again below
    log.info(f"--backend auto: exporting {run.path} to ONNX ({path}), once, to measure ONNX Runtime against PyTorch")
    try:
        return export(run.path, "onnx").path
    except WeightsError:
        raise  # weights that cannot be read serve on no backend: refused once, as they are
    except Exception as exc:  # noqa: BLE001 - whatever else stops the export, PyTorch serves as before
        log.warning(f"--backend auto: PyTorch (no ONNX export: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")
        return None
