"""``cnnlab serve RUN``: a web page and a REST API around a run directory (FastAPI + uvicorn).

- ``GET /``: drop or pick an image, see it and the top classes as bars (no external assets);
- ``POST /predict``: one or several images (multipart, field ``files`` or ``file``), or one image as the
  raw body (``Content-Type: image/*`` or ``application/octet-stream``) -> top-k classes as JSON (``api.py``);
- ``GET /health``, ``GET /model``, ``GET /metrics`` (Prometheus); the OpenAPI schema at ``/docs``.

Bad requests get a JSON error and the server keeps serving: too large (bytes, counted as they stream, or
decoded pixels) -> 413, not an image -> 415, corrupt, a decompression bomb or a threshold outside (0, 1) -> 422,
busy (``--limit-concurrency``, or the pixel budget taken for too long) -> 503 with Retry-After, an unknown Host
-> 400, request headers over their limit -> 431 (``limits.py``, ``http.py``).
Decoding runs in worker threads, never on the event loop; concurrent requests' images share one
forward pass (``MicroBatcher``: up to ``--max-batch`` images, waiting at most ``--max-wait-ms``). A
connection that has not sent a complete request within ``--request-timeout`` is closed
(``RequestTimeoutHttpTools``), and ``--workers N`` runs N processes under gunicorn (``workers.py``).
"""
from __future__ import annotations

from importlib import resources
from typing import Optional

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi_offline import FastAPIOffline

from cnnlab.errors import BadImage, CnnlabError
from cnnlab.inference.prediction import PredictResponse
from cnnlab.inference.predictor import OnnxPredictor, Predictor, load
from cnnlab.rundir import REPORT
from cnnlab.serving.api import PredictAPI
from cnnlab.serving.batching import ModelThread
from cnnlab.serving.documents import ERRORS, PREDICT_BODY, ErrorOut, Health, ModelInfo, describe, read_ink
from cnnlab.serving.http import LimitConcurrency
from cnnlab.serving.limits import KnownHosts, LimitBody
from cnnlab.serving.monitoring import Measure, Monitor
from cnnlab.serving.options import ServeOptions


def create_app(run_dir: str, options: Optional[ServeOptions] = None, predictor: Optional[Predictor] = None,
               thread: Optional[ModelThread] = None) -> FastAPI:
    """The app of ``run_dir`` with ``options`` (default ``ServeOptions()``); ``predictor``: one already loaded;
    ``thread``: the model's thread (default: one that measures the model)."""
    options = options or ServeOptions()
    predictor = predictor or load(run_dir, device=options.device, backend=options.backend,
                                  cuda_graphs=options.cuda_graphs)
    monitor = Monitor()
    api = PredictAPI(predictor, options, on_batch=monitor.batch_size.observe, thread=thread)
    # The API docs at /docs and /redoc from assets served here, not from a CDN: they work offline.
    app = FastAPIOffline(title="cnnlab",
                         description=f"Predictions of the {predictor.run.config.model.name} model in {run_dir}")
    app.state.options = options
    _add_limits(app, options, monitor)
    app.add_exception_handler(CnnlabError, _cnnlab_error)
    app.add_api_route("/predict", api.__call__, methods=["POST"], response_model=PredictResponse,
                      openapi_extra=PREDICT_BODY, responses=ERRORS, name="predict")
    _add_pages(app, predictor, monitor)
    # Starlette tries the routes in order, and a request pays for each one before its own: /predict first (the
    # API docs' routes come before the app's own otherwise).
    app.router.routes.sort(key=lambda route: getattr(route, "path", None) != "/predict")
    return app


def _add_limits(app: FastAPI, options: ServeOptions, monitor: Monitor) -> None:
    app.add_middleware(LimitBody, limit=int(options.max_upload_mb * 1024 * 1024), max_upload_mb=options.max_upload_mb)
    app.add_middleware(LimitConcurrency, limit=options.limit_concurrency, on_refuse=monitor.refused.inc)
    app.add_middleware(KnownHosts, allowed=options.hosts())
    app.add_middleware(Measure, monitor=monitor)  # outermost: it sees every answer, the 400s, 413s and 503s too


async def _cnnlab_error(request, exc: CnnlabError) -> JSONResponse:
    """Each error type has its status: 415/422 for an unusable image or value, 500 for a model that cannot run."""
    detail = f"{exc.source}: {exc.reason}" if isinstance(exc, BadImage) else str(exc)
    return JSONResponse({"detail": detail}, exc.http_status)


def _add_pages(app: FastAPI, predictor: Predictor, monitor: Monitor) -> None:
    """Everything but /predict: the page, /health, /metrics, /model and /report."""
    page = resources.files("cnnlab.serving").joinpath("static/index.html").read_text()
    backend = "onnx" if isinstance(predictor, OnnxPredictor) else "torch"  # what it is, --backend auto's choice too
    ink = read_ink(predictor)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    @app.get("/health", response_model=Health)
    def health() -> Health:
        return Health(status="ok")

    @app.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}},
                                                                       "description": "Prometheus text format"}})
    def metrics() -> Response:
        body, kind = monitor.exposition()
        return Response(body, media_type=kind)

    @app.get("/model", response_model=ModelInfo)
    def model_info() -> ModelInfo:
        return describe(predictor, backend, ink)

    @app.get("/report", response_class=HTMLResponse, responses={404: {"model": ErrorOut}})
    def report() -> HTMLResponse:
        path = predictor.run.path / REPORT
        if not path.is_file():
            raise HTTPException(404, f"this run has no report yet: cnnlab report {predictor.run.path}")
        return HTMLResponse(path.read_text())
