"""The serve extra (FastAPI, uvicorn, ONNX, ONNX Runtime): a clear line when it is not installed."""
from __future__ import annotations

import importlib.util

from cnnlab.errors import MissingExtra

SERVE_MODULES = ("fastapi", "fastapi_offline", "uvicorn", "multipart", "onnx", "onnxruntime")
WORKER_MODULES = ("gunicorn", "uvicorn_worker")  # --workers N (not on Windows, where gunicorn does not run)
INSTALL = "pip install 'cnnlab[serve]'"


def require_serve(what: str, workers: bool = False) -> None:
    """Raise ``MissingExtra`` naming the install command when a module of the serve extra is missing (``workers``:
    those of several worker processes too)."""
    missing = []
    for name in SERVE_MODULES + (WORKER_MODULES if workers else ()):
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a module set to None in sys.modules, or a broken install
            found = False
        if not found:
            missing.append(name)
    if missing:
        raise MissingExtra(f"{what} needs the serve extra, which is not installed (missing: {', '.join(missing)}): "
                           f"{INSTALL}")
