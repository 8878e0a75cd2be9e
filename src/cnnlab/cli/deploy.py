"""Commands that ship a run: export and serve."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cnnlab.cli.app import app
from cnnlab.cli.console import console
from cnnlab.serving.options import ServeOptions


# ----------------------------------------------------------------------------- export / serve
@app.command("export")
def export_cmd(
    run: Path = typer.Argument(..., help="Run directory."),
    fmt: str = typer.Option("onnx", "--format", "-f", help="onnx or torchscript."),
    out_dir: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder to write (default: RUN/export)."),
) -> None:
    """Export the model, its preprocessing inside (ONNX: any image size), checked against PyTorch; export.json says
    what it takes and gives."""
    from cnnlab.inference.extras import require_serve

    require_serve("cnnlab export")
    from cnnlab.inference.export import export
    from cnnlab.rundir import EXPORT_CLIENT, EXPORT_INFO

    result = export(run, fmt, out_dir)
    other = "" if result.max_abs_diff_other_sizes is None else f", {result.max_abs_diff_other_sizes:.2e} at other sizes"
    console.print(f"{result.format}: {result.path} (parity with PyTorch: max abs diff {result.max_abs_diff:.2e}{other})")
    takes = ("uint8 images (N, H, W, C) of any size: it resizes and normalises itself; a client in a few lines: "
             f"python {result.path.parent / EXPORT_CLIENT} IMAGE" if result.format == "onnx" else
             "uint8 images (N, C, H, W) at the model's input size: it normalises itself")
    console.print(f"it takes {takes} (all in {result.path.parent / EXPORT_INFO})")


def _flag(name: str, *decls: str, **kwargs):
    """A flag of ``cnnlab serve`` with its default and help from ``ServeOptions``: written once, there."""
    field = ServeOptions.model_fields[name]
    return typer.Option(field.default, *decls, help=field.description, **kwargs)


@app.command()
def serve(
    run: Path = typer.Argument(..., help="Run directory."),
    host: str = _flag("host"),
    port: int = _flag("port"),
    backend: str = _flag("backend"),
    max_upload_mb: float = _flag("max_upload_mb"),
    device: str = _flag("device"),
    top_k: int = _flag("top_k", "--top-k"),
    threshold: Optional[float] = _flag("threshold"),
    workers: int = _flag("workers"),
    max_batch: int = _flag("max_batch"),
    max_wait_ms: float = _flag("max_wait_ms"),
    limit_concurrency: Optional[int] = _flag("limit_concurrency"),
    request_timeout: float = _flag("request_timeout"),
    max_pixels: Optional[int] = _flag("max_pixels"),
    allowed_hosts: Optional[str] = _flag("allowed_hosts"),
    max_header_kb: float = _flag("max_header_kb"),
    cuda_graphs: bool = _flag("cuda_graphs"),
    access_log: bool = _flag("access_log"),
) -> None:
    """A web page (GET /) and a REST API (POST /predict, GET /health, GET /model, /docs)."""
    import os

    from cnnlab.inference.extras import require_serve

    flags = {name: value for name, value in locals().items() if name in ServeOptions.model_fields}
    options = ServeOptions.from_flags(**flags)  # a wrong option is one line before anything is imported or started
    require_serve("cnnlab serve" if workers == 1 else "cnnlab serve --workers", workers=workers > 1)
    if workers > 1:  # the workers are forked after this: the CUDA check must not initialise CUDA here
        os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    from cnnlab.inference.predictor import resolve_device
    from cnnlab.serving.server import serve as run_server

    resolve_device(device)
    console.print(f"serving {run} on http://{host}:{port}/  (API docs: http://{host}:{port}/docs; requests counted "
                  f"at /metrics{'' if access_log else ', a line each with --access-log'})")
    run_server(str(run), options)
