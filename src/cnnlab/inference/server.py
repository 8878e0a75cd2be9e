"""``cnnlab serve RUN``: a web page and a REST API around a run directory (FastAPI + uvicorn).

- ``GET /``: drop or pick an image, see it and the top classes as bars (no external assets);
- ``POST /predict``: one or several images (multipart, field ``files``) -> top-k classes as JSON;
- ``GET /health``, ``GET /model``; the OpenAPI schema at ``/docs`` and ``/openapi.json``.

Bad requests get a JSON error and the server keeps serving: too large -> 413, not an image -> 415,
corrupt or a decompression bomb -> 422. Inference runs in a worker thread, never on the event loop.
"""
from __future__ import annotations

from importlib import resources
from typing import List, Optional

from fastapi import File, HTTPException, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi_offline import FastAPIOffline

from cnnlab.errors import BadImage, CnnlabError
from cnnlab.inference.predictor import Predictor, load

MB = 1024 * 1024


class RefuseLargeUploads:
    """413 for a /predict whose Content-Length is over the limit, before its body is read.

    A plain ASGI middleware: Starlette's ``@app.middleware("http")`` wraps every request in extra
    tasks and streams, which cost 3 ms a request here (7.8 -> 4.8 ms for a small model's /predict).
    """

    def __init__(self, app, limit: int, max_upload_mb: float) -> None:
        self.app, self.limit, self.max_upload_mb = app, limit, max_upload_mb

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] == "/predict":
            length = dict(scope["headers"]).get(b"content-length", b"")
            if length.isdigit() and int(length) > self.limit + 64 * 1024:  # room for the multipart framing
                detail = f"upload too large: {int(length) / MB:.1f} MB > {self.max_upload_mb:g} MB"
                await JSONResponse({"detail": detail}, 413)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(run_dir: str, backend: str = "torch", max_upload_mb: float = 10.0, top_k: int = 5,
               predictor: Optional[Predictor] = None, device: str = "auto"):
    predictor = predictor or load(run_dir, device=device, backend=backend)
    limit = int(max_upload_mb * MB)
    # The API docs at /docs and /redoc from assets served here, not from a CDN: they work offline.
    app = FastAPIOffline(title="cnnlab", description=f"Predictions of the {predictor.run.config.model.name} model in {run_dir}")
    page = resources.files("cnnlab.inference").joinpath("static/index.html").read_text()

    def decode_and_forward(blobs):
        images = []
        for filename, data in blobs:
            try:
                images.append(predictor.preprocess(data))
            except BadImage as exc:
                exc.source = filename  # bytes have no name of their own: the upload's
                raise
        return predictor.outputs(images)

    app.add_middleware(RefuseLargeUploads, limit=limit, max_upload_mb=max_upload_mb)

    @app.exception_handler(CnnlabError)
    async def cnnlab_error(request, exc: CnnlabError) -> JSONResponse:
        """Each error type has its status: 415/422 for an unusable image, 500 for a model that cannot run."""
        detail = f"{exc.source}: {exc.reason}" if isinstance(exc, BadImage) else str(exc)
        return JSONResponse({"detail": detail}, exc.http_status)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/model")
    def model_info() -> dict:
        run = predictor.run
        return {
            "name": run.config.model.name, "task": run.task, "classes": run.classes,
            "input_size": [run.pre.channels, *run.pre.size], "backend": backend,
            "training": run.training_info().get("final", {}),
            "test_accuracy": run.evaluation().get("accuracy"),
        }

    @app.post("/predict")
    async def predict(files: Optional[List[UploadFile]] = File(None, description="one or more image files"),
                      file: Optional[UploadFile] = File(None, description="one image file (the same as files)")) -> dict:
        files = [*(files or []), *([file] if file is not None else [])]
        if not files:
            raise HTTPException(422, "no image: send it as a multipart/form-data field named 'files' (or 'file'), "
                                     "e.g. curl -F files=@digit.png http://HOST/predict")
        blobs = []
        for f in files:
            data = await f.read(limit + 1)
            if len(data) > limit:
                raise HTTPException(413, f"{f.filename}: upload too large (> {max_upload_mb:g} MB)")
            blobs.append((f.filename, data))
        # Decoding and the forward pass are CPU work: one hop off the event loop for both.
        outputs = await run_in_threadpool(decode_and_forward, blobs)
        preds = predictor.to_predictions(outputs, [f.filename for f in files], top_k)
        return {"predictions": [{"filename": p.path, "label": p.label, "probability": p.probability,
                                 "top_k": p.top_k} for p in preds]}

    return app


def serve(run_dir: str, host: str = "127.0.0.1", port: int = 8000, backend: str = "torch",
          max_upload_mb: float = 10.0, device: str = "auto") -> None:
    import uvicorn

    uvicorn.run(create_app(run_dir, backend, max_upload_mb, device=device), host=host, port=port, log_level="info")
