"""The API's documents besides the prediction (``cnnlab.inference.prediction``): what ``GET /model`` and
``GET /health`` answer, an error's body, and what /predict takes (for the OpenAPI schema at /docs)."""
from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, Field

from cnnlab.errors import BadImage
from cnnlab.rundir import REPORT


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


THRESHOLD = {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}
THRESHOLD_TEXT = ("mark predictions whose top probability is below this as uncertain (label null); default: the "
                  "server's --threshold")
PREDICT_BODY = {
    "parameters": [{"name": "threshold", "in": "query", "required": False, "schema": THRESHOLD,
                    "description": THRESHOLD_TEXT}],
    "requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "files": {"type": "array", "items": {"type": "string", "format": "binary"},
                      "description": "one or more image files"},
            "file": {"type": "string", "format": "binary", "description": "one image file (the same as files)"},
            "threshold": {**THRESHOLD, "description": f"{THRESHOLD_TEXT} (the query's, when both are sent)"}}}},
        "image/*": {"schema": {"type": "string", "format": "binary", "description": "one image as the body"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}
ERRORS = {status: {"model": ErrorOut, "description": text} for status, text in (
    (400, "a Host this server does not answer to, or a malformed multipart body"),
    (413, "upload too large, or an image with more pixels than --max-pixels"),
    (415, "not an image, or an unsupported Content-Type"),
    (422, "corrupt image, decompression bomb, no image sent, a threshold outside (0, 1)"),
    (500, "the model cannot run"),
    (503, "busy: --limit-concurrency requests in flight, or the pixel budget taken; see Retry-After"))}


def describe(predictor, backend: str, ink: Optional[str]) -> ModelInfo:
    """``GET /model``, read from the run now (an evaluation or a report made since shows); ``ink``: ``read_ink``'s."""
    run = predictor.run
    headline = run.evaluation()
    note = headline.get("split_note") or (
        "validation images, which also selected the model" if headline.get("split") == "val" else None)
    return ModelInfo(name=run.config.model.name, task=run.task, classes=run.classes,
                     input_size=[run.pre.channels, *run.pre.size], backend=backend,
                     training=run.training_figures(), test_accuracy=headline.get("accuracy"),
                     evaluated_on=headline.get("split"), note=note, report=(run.path / REPORT).is_file(),
                     ink=ink)


def read_ink(predictor, count: int = 16) -> Optional[str]:
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
