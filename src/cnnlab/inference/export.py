"""``cnnlab export RUN --format onnx|torchscript``: a deployable file, its preprocessing beside it, and a
parity check against PyTorch at export time.

The exported graph takes uint8 images (N, C, H, W) at the model's input size and returns logits
(classification) or values (regression); the normalisation is inside it.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from cnnlab import files
from cnnlab.errors import CnnlabError
from cnnlab import rundir
from cnnlab.rundir import CLASSES, PREPROCESSING, Run

PARITY_TOLERANCE = 1e-4
FORMATS = ("onnx", "torchscript")


@dataclass
class Exported:
    path: Path
    format: str
    max_abs_diff: float


def _samples(run: Run, n: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, run.pre.channels, *run.pre.size), dtype=torch.uint8, generator=g)


def weights_sha256(run: Run) -> str:
    return hashlib.sha256(rundir.weights_path(run.path).read_bytes()).hexdigest()


def check_current(run: Run, folder: Path) -> None:
    """Refuse an export made from other weights than the run's model.safetensors (trained again since)."""
    info = folder / rundir.EXPORT_INFO
    recorded = json.loads(info.read_text()).get("weights_sha256") if info.is_file() else None
    if recorded != weights_sha256(run):
        why = "records no weights hash" if recorded is None else "was made from other weights (trained again since?)"
        raise CnnlabError(f"the export in {folder} {why} than {rundir.weights_path(run.path)}: export it again with "
                          f"cnnlab export {run.path}")


def onnx_session(path: Path, threads: Optional[int] = None):
    """An ONNX Runtime session, after checking that the file's external data stays inside its folder."""
    import onnxruntime as ort

    files.check_onnx(path)
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def export(run_dir: Union[str, Path], fmt: str = "onnx", out: Optional[Union[str, Path]] = None) -> Exported:
    if fmt not in FORMATS:
        raise CnnlabError(f"unknown export format '{fmt}'. Known: {', '.join(FORMATS)}")
    run = Run.open(run_dir)
    model = run.load_model("cpu").eval()
    out_dir = Path(out) if out is not None else run.export_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    x = _samples(run)
    with torch.no_grad():
        expected = model(x).numpy()
    if fmt == "onnx":
        path = out_dir / rundir.ONNX
        with files.atomic_path(path) as tmp:
            torch.onnx.export(model, (x,), str(tmp), input_names=["image"], output_names=["output"],
                              dynamic_axes={"image": {0: "batch"}, "output": {0: "batch"}}, dynamo=False)
            got = onnx_session(tmp).run(None, {"image": x.numpy()})[0]
    else:
        path = out_dir / rundir.TORCHSCRIPT
        with torch.no_grad():
            traced = torch.jit.trace(model, x)
        buf = io.BytesIO()
        torch.jit.save(traced, buf)
        data = buf.getvalue()
        with torch.no_grad():  # the very bytes written below, from memory: torch.jit.load never sees a path
            got = torch.jit.load(io.BytesIO(data)).eval()(x).numpy()
        files.write_bytes(path, data)
    diff = float(np.abs(got - expected).max())
    if diff > PARITY_TOLERANCE:
        raise CnnlabError(f"exported {fmt} model disagrees with PyTorch: max abs diff {diff:.2e} > {PARITY_TOLERANCE:g}")
    for name in (PREPROCESSING, CLASSES):
        files.write_bytes(out_dir / name, (run.path / name).read_bytes())
    files.write_json(out_dir / rundir.EXPORT_INFO, {
        "format": fmt, "file": path.name, "input": {"name": "image", "dtype": "uint8",
                                                   "shape": ["batch", run.pre.channels, *run.pre.size]},
        "output": "probabilities = softmax(output / temperature)" if run.task == "classification" else "regression values",
        "temperature": run.temperature(),  # calibration.json's (1.0 when the run has none)
        "max_abs_diff": diff, "model": run.config.model.name, "weights_sha256": weights_sha256(run)})
    return Exported(path, fmt, diff)


def ensure_onnx(run_dir: Union[str, Path]) -> Optional[Path]:
    """The run's current ONNX export, made now (into RUN/export/, a few seconds, once) when it has none or a stale
    one: ``cnnlab serve --backend auto`` on the CPU, so that ONNX Runtime is measured against PyTorch without a
    ``cnnlab export`` first. None, with a log line, when it cannot be made (a read-only run directory, an operator
    the exporter refuses): the server then runs PyTorch, as it would have.

    On the CPU, ONNX Runtime runs a whole forward pass without Python's lock, where PyTorch's eager mode takes it
    back after each operator and, while the server's event loop is busy, waits for it each time: one image of
    cnn-small took 0.7-1.0 ms alone and 19-82 ms with a busy Python thread in PyTorch, 0.16-0.23 -> 5.7-5.9 ms in
    ONNX Runtime; ResNet-18 7-9x slower in PyTorch, 1.1-1.3x in ONNX Runtime (``benchmarks/serving.py --gil``)."""
    import logging

    log = logging.getLogger(__name__)
    run = Run.open(run_dir)
    path = run.export_dir() / rundir.ONNX
    if path.is_file():
        try:
            check_current(run, path.parent)
            return path
        except CnnlabError:
            pass  # made from other weights: made again below
    log.info(f"--backend auto: exporting {run.path} to ONNX ({path}), once, to measure ONNX Runtime against PyTorch")
    try:
        return export(run.path, "onnx").path
    except Exception as exc:  # noqa: BLE001 - whatever stops the export, PyTorch serves as before
        log.warning(f"--backend auto: PyTorch (no ONNX export: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")
        return None
