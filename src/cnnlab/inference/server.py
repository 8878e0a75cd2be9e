"""``cnnlab serve RUN``: a web page and a REST API around a run directory (FastAPI + uvicorn).

- ``GET /``: drop or pick an image, see it and the top classes as bars (no external assets);
- ``POST /predict``: one or several images (multipart, field ``files`` or ``file``), or one image as the
  raw body (``Content-Type: image/*`` or ``application/octet-stream``) -> top-k classes as JSON;
- ``GET /health``, ``GET /model``, ``GET /metrics`` (Prometheus); the OpenAPI schema at ``/docs``.

Bad requests get a JSON error and the server keeps serving: too large (bytes, counted as they stream, or
decoded pixels) -> 413, not an image -> 415, corrupt or a decompression bomb -> 422, busy
(``--limit-concurrency``, or the pixel budget taken for too long) -> 503 with Retry-After, an unknown Host
-> 400, request headers over their limit -> 431 (``limits.py``, ``http.py``).
Decoding runs in worker threads, never on the event loop; concurrent requests' images share one
forward pass (``MicroBatcher``: up to ``--max-batch`` images, waiting at most ``--max-wait-ms``). A
connection that has not sent a complete request within ``--request-timeout`` is closed
(``RequestTimeoutHttpTools``), and ``--workers N`` runs N processes under gunicorn (``workers.py``).
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import Optional, Sequence, Union

from fastapi import HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from cnnlab.data.images import decoded_pixels
from cnnlab.errors import BadImage, CnnlabError
from cnnlab.inference.batching import MicroBatcher, ModelThread
from cnnlab.inference.http import DEFAULT_MAX_HEADER_BYTES, LimitConcurrency
from cnnlab.inference.limits import (KnownHosts, LimitBody, PixelBudget, default_allowed_hosts, default_max_pixels,
                                     in_memory_parts)
from cnnlab.inference.monitoring import Measure, Monitor
from cnnlab.inference.predictor import OnnxPredictor, Predictor, check_threshold, load, resolve_device
from cnnlab.rundir import REPORT

MB = 1024 * 1024
SMALL_BYTES, SMALL_PIXELS = 256 * 1024, 256 * 256  # an upload this small decodes in well under a millisecond
MAX_PARTS = 64  # file parts (and other fields) in one multipart request: more is refused before it is read
RAW_TYPES = ("image/", "application/octet-stream")


# ----------------------------------------------------------------------------- the API's documents
class TopK(BaseModel):
    label: str = Field(description="a class name")
    probability: float = Field(description="softmax probability, in [0, 1]")


class PredictionOut(BaseModel):
    filename: Optional[str] = Field(description="the upload's file name (null for a raw body)")
    label: Union[str, float, None] = Field(
        description="the top class, or the predicted value for a regression model; null when uncertain")
    probability: Optional[float] = Field(description="the top class's calibrated probability (null for regression)")
    top_k: list[TopK] = Field(description="the most probable classes, most probable first")
    uncertain: bool = Field(False, description="the top probability is below the threshold: no label is given")


class PredictResponse(BaseModel):
    predictions: list[PredictionOut] = Field(description="one per image, in the order sent")


class ModelInfo(BaseModel):
    name: str = Field(description="the model's name (cnnlab models)")
    task: str = Field(description="classification or regression")
    classes: list[str] = Field(description="class names in output order (empty for regression)")
    input_size: list[int] = Field(description="[channels, height, width] the model takes")
    backend: str = Field(description="torch or onnx")
    training: dict[str, float] = Field(description="the last epoch's figures from training, and seconds: the whole "
                                                   "training time")
    test_accuracy: Optional[float] = Field(description="accuracy on the run's held-out images, once evaluated")
    evaluated_on: Optional[str] = Field(None, description="the images of test_accuracy: test, or val (validation "
                                                          "images, which also selected the model); null before")
    note: Optional[str] = Field(None, description="what test_accuracy is worth when it is not on test images")
    report: bool = Field(description="whether the run has a report (cnnlab report), served at GET /report")
    ink: Optional[str] = Field(description="single-channel models: light (on a dark ground, as MNIST) or dark ink, "
                                           "read from the training images; null when unknown")


class Health(BaseModel):
    status: str = Field(description="ok while the server serves")


class ErrorOut(BaseModel):
    detail: str = Field(description="what was wrong and what to do")


PREDICT_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "files": {"type": "array", "items": {"type": "string", "format": "binary"},
                  "description": "one or more image files"},
        "file": {"type": "string", "format": "binary", "description": "one image file (the same as files)"}}}},
    "image/*": {"schema": {"type": "string", "format": "binary", "description": "one image as the body"}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}
ERRORS = {status: {"model": ErrorOut, "description": text} for status, text in (
    (400, "a Host this server does not answer to, or a malformed multipart body"),
    (413, "upload too large, or an image with more pixels than --max-pixels"),
    (415, "not an image, or an unsupported Content-Type"),
    (422, "corrupt image, decompression bomb, no image sent"), (500, "the model cannot run"),
    (503, "busy: --limit-concurrency requests in flight, or the pixel budget taken; see Retry-After"))}


def check_options(max_batch: int = 32, max_wait_ms: float = 5.0, limit_concurrency: Optional[int] = None,
                  request_timeout: float = 30.0, workers: int = 1, max_pixels: Optional[int] = None,
                  max_header_kb: float = DEFAULT_MAX_HEADER_BYTES / 1024) -> None:
    """The serving options, checked before anything starts (one line naming them, for the CLI too)."""
    if (max_batch < 1 or max_wait_ms < 0 or (limit_concurrency is not None and limit_concurrency < 1)
            or request_timeout <= 0 or workers < 1 or (max_pixels is not None and max_pixels < 1)
            or not 1 <= max_header_kb <= 1024):
        raise CnnlabError(f"--max-batch {max_batch}, --max-wait-ms {max_wait_ms:g}, --limit-concurrency "
                          f"{limit_concurrency}, --request-timeout {request_timeout:g}, --workers {workers}, "
                          f"--max-pixels {max_pixels}, --max-header-kb {max_header_kb:g}: --workers, --max-batch, "
                          f"--limit-concurrency and --max-pixels must be at least 1, --max-wait-ms at least 0, "
                          f"--request-timeout above 0, --max-header-kb from 1 to 1024")


def create_app(run_dir: str, backend: str = "torch", max_upload_mb: float = 10.0, top_k: int = 5,
               predictor: Optional[Predictor] = None, device: str = "auto", threshold: Optional[float] = None,
               max_batch: int = 32, max_wait_ms: float = 5.0, limit_concurrency: Optional[int] = None,
               max_pixels: Optional[int] = None, allowed_hosts: Sequence[str] = ("*",)):
    """The app; ``max_pixels``: decoded pixels at once (None: ``default_max_pixels`` for the model's input);
    ``allowed_hosts``: the Host names it answers (``cnnlab serve`` keeps to loopback names on a loopback
    address)."""
    check_threshold(threshold)
    check_options(max_batch, max_wait_ms, limit_concurrency, max_pixels=max_pixels)
    predictor = predictor or load(run_dir, device=device, backend=backend)
    if backend == "auto":  # what it chose, for GET /model
        backend = "onnx" if isinstance(predictor, OnnxPredictor) else "torch"
    monitor = Monitor()

    def forward(images: list) -> list:  # in the model thread: outputs, ranked there, a row an image
        return predictor.ranked(predictor.outputs(images), top_k)

    batcher = MicroBatcher(forward, max_batch, max_wait_ms, on_batch=monitor.batch_size.observe,
                           thread=ModelThread(predictor))
    # Decoding's own threads: asyncio's hop to a plain pool costs the event loop a third of what AnyIO's
    # run_in_threadpool does (its capacity limiter and cancel scopes), on every request under load.
    decoders = ThreadPoolExecutor(thread_name_prefix="cnnlab-decode")
    limit = int(max_upload_mb * MB)
    default_threshold = threshold
    # The API docs at /docs and /redoc from assets served here, not from a CDN: they work offline.
    app = FastAPIOffline(title="cnnlab", description=f"Predictions of the {predictor.run.config.model.name} model in {run_dir}")
    page = resources.files("cnnlab.inference").joinpath("static/index.html").read_text()

    def decode(blobs):
        images = []
        for filename, data in blobs:
            try:
                images.append(predictor.preprocess(data))
            except BadImage as exc:
                exc.source = filename or "the request body"  # bytes have no name of their own: the upload's
                raise
        return images

    small_pixels = max(SMALL_PIXELS, 4 * predictor.pre.size[0] * predictor.pre.size[1])
    budget = PixelBudget(max_pixels or default_max_pixels(predictor.pre.size))

    def small(blobs, pixels: list) -> bool:
        """A model fast enough to run on the event loop, and one image of few bytes and (from its header) few
        pixels: its decoding cannot hold the event loop long either."""
        return (batcher.thread.inline and len(blobs) == 1 and len(blobs[0][1]) <= SMALL_BYTES
                and pixels[0] is not None and pixels[0] <= small_pixels)

    def decode_and_forward(blobs):
        images = decode(blobs)
        return images, forward(images)

    app.add_middleware(LimitBody, limit=limit, max_upload_mb=max_upload_mb)
    app.add_middleware(LimitConcurrency, limit=limit_concurrency, on_refuse=monitor.refused.inc)
    app.add_middleware(KnownHosts, allowed=allowed_hosts)
    app.add_middleware(Measure, monitor=monitor)  # outermost: it sees every answer, the 400s, 413s and 503s too

    @app.exception_handler(CnnlabError)
    async def cnnlab_error(request, exc: CnnlabError) -> JSONResponse:
        """Each error type has its status: 415/422 for an unusable image, 500 for a model that cannot run."""
        detail = f"{exc.source}: {exc.reason}" if isinstance(exc, BadImage) else str(exc)
        return JSONResponse({"detail": detail}, exc.http_status)

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

    ink = _ink(predictor)

    @app.get("/model", response_model=ModelInfo)
    def model_info() -> ModelInfo:
        run = predictor.run
        headline = run.evaluation()
        return ModelInfo(name=run.config.model.name, task=run.task, classes=run.classes,
                         input_size=[run.pre.channels, *run.pre.size], backend=backend,
                         training=run.training_figures(), test_accuracy=headline.get("accuracy"),
                         evaluated_on=headline.get("split"), note=headline.get("split_note") or (
                             "validation images, which also selected the model" if headline.get("split") == "val"
                             else None),
                         report=(run.path / REPORT).is_file(), ink=ink)

    @app.get("/report", response_class=HTMLResponse, responses={404: {"model": ErrorOut}})
    def report() -> HTMLResponse:
        path = predictor.run.path / REPORT
        if not path.is_file():
            raise HTTPException(404, f"this run has no report yet: cnnlab report {predictor.run.path}")
        return HTMLResponse(path.read_text())

    async def multipart(request: Request) -> list[tuple[Optional[str], bytes]]:
        blobs = []
        # More parts than MAX_PARTS are refused with a 400 before they are all read; the parts stay in memory.
        parser = in_memory_parts(MultiPartParser(request.headers, request.stream(), max_files=MAX_PARTS,
                                                 max_fields=MAX_PARTS), limit)
        try:
            form = await parser.parse()
        except MultiPartException as exc:
            raise HTTPException(400, exc.message) from None
        try:
            for part in [*form.getlist("files"), *form.getlist("file")]:
                if not isinstance(part, UploadFile):
                    raise HTTPException(422, "the 'files' field holds text, not a file: send it as a file part "
                                             "(curl -F files=@digit.png)")
                data = await part.read(limit + 1)
                if len(data) > limit:
                    raise HTTPException(413, f"{part.filename}: upload too large (> {max_upload_mb:g} MB)")
                blobs.append((part.filename, data))
        finally:
            await form.close()
        return blobs

    async def raw_body(request: Request) -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():  # bounded as it arrives (a body without a Content-Length too)
            if chunk:
                chunks.append(chunk)
                size += len(chunk)
            if size > limit:
                raise HTTPException(413, f"upload too large (> {max_upload_mb:g} MB)")
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)  # one copy at most

    async def read_images(request: Request) -> list[tuple[Optional[str], bytes]]:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "multipart/form-data":
            blobs = await multipart(request)
        elif kind.startswith(RAW_TYPES):
            blobs = [(None, await raw_body(request))]
        elif not kind:  # nothing said about a body: nothing sent
            blobs = []
        else:
            raise HTTPException(415, f"unsupported Content-Type '{kind or 'none'}': send multipart/form-data with a "
                                     f"'files' field, or the image itself as image/* or application/octet-stream")
        if not blobs:
            raise HTTPException(422, "no image: send it as a multipart/form-data field named 'files' (or 'file'), "
                                     "e.g. curl -F files=@digit.png http://HOST/predict, or as the raw body with "
                                     "Content-Type: image/png")
        return blobs

    @app.post("/predict", response_model=PredictResponse, openapi_extra=PREDICT_BODY, responses=ERRORS)
    async def predict(request: Request, threshold: Optional[float] = Query(
            default_threshold, gt=0, lt=1, description="mark predictions whose top probability is below this as "
                                                       "uncertain (label null); default: the server's --threshold")
                      ) -> PredictResponse:
        """Top-k classes of each image: multipart ``files`` (or ``file``), or one image as the raw body."""
        # Announced before its body is read, so that a batch being gathered waits for it; and before choosing
        # to run alone, one turn of the event loop lets requests already received announce themselves too.
        with batcher.arriving() as token:
            blobs = await read_images(request)
            pixels = [decoded_pixels(data, predictor.pre.channels, predictor.pre.size) for _, data in blobs]
            async with budget.reserve(budget.check(pixels, [name for name, _ in blobs])):  # while decoding
                await asyncio.sleep(0)
                alone = batcher.alone()
                if alone:  # nobody to share a batch with: decode and forward in one hop
                    outputs = await batcher.run_alone(lambda: decode_and_forward(blobs), len(blobs),
                                                      small(blobs, pixels))
                else:  # decoding off the event loop, the forward pass shared with concurrent requests
                    images = await asyncio.get_running_loop().run_in_executor(decoders, decode, blobs)
            if not alone:
                outputs = await batcher.submit(images, token)
        preds = predictor.predictions(outputs, [name for name, _ in blobs], threshold)
        # The document PredictResponse describes, built directly: FastAPI's validation and serialisation of a
        # returned model cost ~0.3 ms of a small model's ~2.4 ms round trip.
        return JSONResponse({"predictions": [{"filename": p.path, "label": p.label, "probability": p.probability,
                                              "top_k": p.top_k, "uncertain": p.uncertain} for p in preds]})

    # Starlette tries the routes in order, and a request pays for each one before its own: /predict first (the
    # API docs' routes come before the app's own otherwise).
    app.router.routes.sort(key=lambda route: getattr(route, "path", None) != "/predict")
    return app


def _ink(predictor: Predictor, count: int = 16) -> Optional[str]:
    """Single-channel models: "light" when the training images are mostly dark (a light digit on a dark
    ground, as MNIST), else "dark"; None when they cannot be read here (a run copied without its data)."""
    if predictor.pre.channels != 1:
        return None
    rows = [r for r in predictor.run.split() if r["split"] == "train"][:count]
    means = []
    for row in rows:
        try:
            means.append(float(predictor.preprocess(row["path"]).float().mean()))
        except (BadImage, OSError):
            continue
    return None if not means else "light" if sum(means) / len(means) < 128 else "dark"


SERVE_ENV = "CNNLAB_SERVE"  # the app's options, for the worker processes


def app_from_env():
    """The app of ``cnnlab serve --workers N``: each worker process builds it from ``CNNLAB_SERVE``."""
    import json
    import os

    options = json.loads(os.environ[SERVE_ENV])
    return create_app(options.pop("run_dir"), **options)


def serve(run_dir: str, host: str = "127.0.0.1", port: int = 8000, backend: str = "torch",
          max_upload_mb: float = 10.0, device: str = "auto", threshold: Optional[float] = None, workers: int = 1,
          max_batch: int = 32, max_wait_ms: float = 5.0, limit_concurrency: Optional[int] = None,
          request_timeout: float = 30.0, access_log: bool = False, max_pixels: Optional[int] = None,
          allowed_hosts: Optional[Sequence[str]] = None, max_header_kb: float = DEFAULT_MAX_HEADER_BYTES / 1024) -> None:
    """Serve ``run_dir`` (see ``create_app``). ``access_log``: uvicorn's line per request, off by default as in
    gunicorn: formatted and written on the event loop before the response's body, it cost 0.6 ms of a small
    model's 2.2 ms /predict here; /metrics counts every request either way. ``allowed_hosts``: None, the loopback
    names when ``host`` is a loopback address, else any."""
    import json
    import os

    from cnnlab.inference.http import HEADER_ENV, TIMEOUT_ENV, request_timeout_protocol

    check_options(max_batch, max_wait_ms, limit_concurrency, request_timeout, workers, max_pixels, max_header_kb)
    export = backend == "auto" and resolve_device(device).type == "cpu"  # once, before any worker starts
    os.environ[TIMEOUT_ENV] = str(request_timeout)
    os.environ[HEADER_ENV] = str(int(max_header_kb * 1024))
    options = {"backend": backend, "max_upload_mb": max_upload_mb, "device": device, "threshold": threshold,
               "max_batch": max_batch, "max_wait_ms": max_wait_ms, "limit_concurrency": limit_concurrency,
               "max_pixels": max_pixels, "allowed_hosts": list(allowed_hosts or default_allowed_hosts(host))}
    if workers > 1:  # gunicorn's arbiter; the workers build the app from the environment
        from cnnlab.inference.workers import export_apart, serve_workers

        if export:
            export_apart(run_dir)
        os.environ[SERVE_ENV] = json.dumps({"run_dir": run_dir, **options})
        serve_workers(app_from_env, host, port, workers, access_log)
        return
    import uvicorn

    if export:
        from cnnlab.inference.export import ensure_onnx

        ensure_onnx(run_dir)
    uvicorn.run(create_app(run_dir, **options), host=host, port=port, log_level="info",
                http=request_timeout_protocol(), access_log=access_log)
