"""Commands that ship a run: export and serve."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cnnlab.cli.app import app
from cnnlab.console import console


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


@app.command()
def serve(
    run: Path = typer.Argument(..., help="Run directory."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (default: this machine only)."),
    port: int = typer.Option(8000, help="Port."),
    backend: str = typer.Option("auto", help="torch, onnx, or auto: on the CPU, ONNX Runtime when it runs an image "
                                             "faster (the run is exported to ONNX first if it has no current "
                                             "export), else torch."),
    max_upload_mb: float = typer.Option(10.0, help="Largest accepted upload, in MB."),
    device: str = typer.Option("auto", help="auto (a GPU when there is one), cpu or cuda."),
    threshold: Optional[float] = typer.Option(None, help="Default threshold (0-1): a top probability below it is "
                                                          "answered uncertain, label null (?threshold= per request)."),
    workers: int = typer.Option(1, help="Server processes under gunicorn (a worker that dies is replaced)."),
    max_batch: int = typer.Option(32, help="Most images in one forward pass (micro-batching of concurrent requests)."),
    max_wait_ms: float = typer.Option(5.0, help="Longest wait for more requests to join a batch, in ms."),
    limit_concurrency: Optional[int] = typer.Option(None, help="Requests to the model in flight at most; more get 503 "
                                                                "with Retry-After."),
    request_timeout: float = typer.Option(30.0, help="Seconds a connection has to send a complete request "
                                                     "(headers and body) before it is closed."),
    max_pixels: Optional[int] = typer.Option(None, help="Decoded pixels at once, in one image or all being decoded "
                                                         "together (default: 4096x4096, or 16x the model's input on "
                                                         "each side if larger); a larger image gets 413."),
    allowed_hosts: Optional[str] = typer.Option(None, help="Host names the server answers, comma-separated ('*': any; "
                                                            "default: localhost,127.0.0.1,[::1] on a loopback --host, "
                                                            "else any); another Host gets 400."),
    max_header_kb: float = typer.Option(32.0, help="Request line and headers, in KB, at most (and 100 header "
                                                   "fields); more gets 431."),
    access_log: bool = typer.Option(False, help="Print a line for each request (it costs a small model's request "
                                                "a third of its time; GET /metrics counts them either way)."),
) -> None:
    """A web page (GET /) and a REST API (POST /predict, GET /health, GET /model, /docs)."""
    import os

    from cnnlab.inference.extras import require_serve

    require_serve("cnnlab serve" if workers == 1 else "cnnlab serve --workers", workers=workers > 1)
    if workers > 1:  # the workers are forked after this: the CUDA check must not initialise CUDA here
        os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    from cnnlab.inference.predictor import check_threshold, resolve_device
    from cnnlab.inference.server import check_options, serve as run_server

    resolve_device(device)  # a wrong option is one line before anything is printed or started
    check_threshold(threshold)
    check_options(max_batch, max_wait_ms, limit_concurrency, request_timeout, workers, max_pixels, max_header_kb)
    hosts = None if allowed_hosts is None else [h for h in allowed_hosts.split(",") if h.strip()]
    console.print(f"serving {run} on http://{host}:{port}/  (API docs: http://{host}:{port}/docs; requests counted "
                  f"at /metrics{'' if access_log else ', a line each with --access-log'})")
    run_server(str(run), host, port, backend, max_upload_mb, device, threshold, workers, max_batch, max_wait_ms,
               limit_concurrency, request_timeout, access_log, max_pixels=max_pixels, allowed_hosts=hosts,
               max_header_kb=max_header_kb)
