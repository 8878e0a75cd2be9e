"""``cnnlab serve --workers N``: N uvicorn servers (with cnnlab's HTTP protocol) under gunicorn's arbiter.

Not uvicorn's own supervisor: it checks each worker with a ping over a pipe that a thread of the worker answers,
within 5 s. A replacement worker importing PyTorch on a loaded machine holds Python's lock longer than that, so
the supervisor killed it and started another: 8 replacements killed while a load lasted, 30 workers at a loaded
start. gunicorn's arbiter watches a heartbeat that each worker's event loop writes (a worker silent for
``TIMEOUT_S`` is replaced), and it forks workers from a master that has already imported PyTorch and the server,
so that a replacement only loads the model.

Forked after a PyTorch operator has run on several threads, a child's OpenMP hangs at its first parallel
operator: the master runs none. An ONNX export that ``--backend auto`` needs is made in a process of its own.
Every worker counts its metrics into files under ``PROMETHEUS_MULTIPROC_DIR``, set before any worker starts, and
``GET /metrics`` adds them up.
"""
from __future__ import annotations

import os
import tempfile
from typing import Callable

from gunicorn.app.base import BaseApplication
from uvicorn_worker import UvicornWorker

from cnnlab.errors import CnnlabError
from cnnlab.serving.http import request_timeout_protocol
from cnnlab.serving.options import ServeOptions

TIMEOUT_S = 60  # a worker whose event loop has not written its heartbeat for this long is replaced
GRACEFUL_S = 10  # on SIGTERM, requests in flight get this long to finish


def worker_class(options: ServeOptions) -> type:
    """gunicorn's uvicorn worker with cnnlab's HTTP protocol (``options``' request deadline and bounded heads, JSON
    refusals); the workers are forked with it."""
    return type("Worker", (UvicornWorker,), {"CONFIG_KWARGS": {"loop": "auto", "http": request_timeout_protocol(options)}})


class Arbiter(BaseApplication):
    """gunicorn configured from here rather than from its command line; each worker builds the app itself
    (``factory()``, after the fork)."""

    def __init__(self, settings: dict, factory: Callable) -> None:
        self.settings, self.factory = settings, factory
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.settings.items():
            self.cfg.set(key, value)

    def load(self):
        return self.factory()


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def export_apart(run_dir: str) -> None:
    """``ensure_onnx`` (``--backend auto`` on the CPU) in a process forked for it when the run has no current ONNX
    export (checking that it has one runs no PyTorch operator): the export's threads stay out of the master. Forked
    rather than spawned, it needs no imports of its own: 0.6 s here, against 19 s spawned on a loaded machine."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from cnnlab import rundir
    from cnnlab.inference.export import check_current, ensure_onnx
    from cnnlab.rundir import Run

    run = Run.open(run_dir)
    if (run.export_dir() / rundir.ONNX).is_file():
        try:
            check_current(run, run.export_dir())
            return
        except CnnlabError:
            pass
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        pool.submit(ensure_onnx, run_dir).result()


def serve_workers(factory: Callable, options: ServeOptions) -> None:
    """Serve ``factory()``'s app (built in each worker) with ``options.workers`` processes."""
    with tempfile.TemporaryDirectory(prefix="cnnlab-metrics-") as metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        Arbiter({"bind": [bind_address(options.host, options.port)], "workers": options.workers,
                 "worker_class": worker_class(options),
                 "timeout": TIMEOUT_S, "graceful_timeout": GRACEFUL_S, "keepalive": 5, "loglevel": "info",
                 "errorlog": "-", "accesslog": "-" if options.access_log else None, "preload_app": False,
                 "control_socket_disable": True}, factory).run()
