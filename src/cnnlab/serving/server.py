"""``serve()``: one process under uvicorn, or ``--workers N`` under gunicorn, each building ``create_app`` from
one ``ServeOptions``."""
from __future__ import annotations

import os
from typing import Optional

from cnnlab.inference.predictor import resolve_device
from cnnlab.serving.app import create_app
from cnnlab.serving.options import ServeOptions, WorkerSpec

SERVE_ENV = "CNNLAB_SERVE"  # the worker processes' WorkerSpec, as JSON


def app_from_env():
    """The app of ``cnnlab serve --workers N``: each worker process builds it from ``CNNLAB_SERVE``."""
    spec = WorkerSpec.model_validate_json(os.environ[SERVE_ENV])
    return create_app(spec.run_dir, spec.options)


def serve(run_dir: str, options: Optional[ServeOptions] = None) -> None:
    """Serve ``run_dir`` (see ``create_app``). ``options.access_log``: uvicorn's line per request, off by default as
    in gunicorn: formatted and written on the event loop before the response's body, it cost 0.6 ms of a small
    model's 2.2 ms /predict here; /metrics counts every request either way."""
    from cnnlab.serving.http import request_timeout_protocol

    options = options or ServeOptions()
    export = options.backend == "auto" and resolve_device(options.device).type == "cpu"  # once, before any worker
    if options.workers > 1:  # gunicorn's arbiter; the workers build the app from the environment
        from cnnlab.serving.workers import export_apart, serve_workers

        if export:
            export_apart(run_dir)
        os.environ[SERVE_ENV] = WorkerSpec(run_dir=run_dir, options=options).model_dump_json()
        serve_workers(app_from_env, options)
        return
    import uvicorn

    if export:
        from cnnlab.inference.export import ensure_onnx

        ensure_onnx(run_dir)
    uvicorn.run(create_app(run_dir, options), host=options.host, port=options.port, log_level="info",
                http=request_timeout_protocol(options), access_log=options.access_log)
