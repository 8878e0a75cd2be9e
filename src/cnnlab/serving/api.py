"""``POST /predict`` as LitServe's ``LitAPI`` names the stages of a server: ``decode_request`` (bytes -> the
model's input), ``batch``, ``predict``, ``unbatch`` (``MicroBatcher``: concurrent requests' images in one forward
pass, each request its own rows) and ``encode_response`` (rows -> the ``PredictResponse`` document).

Where each stage runs is ours, not LitServe's. LitServe decodes and predicts in worker processes fed by queues;
here decoding runs in threads and the model in one thread of its own (``ModelThread``), so that the event loop
never waits for them, and a request that has nobody to share a batch with decodes and predicts in one hop (or, a
small image for a fast model, on the event loop itself): a queue between processes would cost a small model's
request more than its forward pass. ``--workers N`` gives the processes.
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from fastapi import Request
from fastapi.responses import Response

from cnnlab.data.images import decoded_pixels
from cnnlab.errors import BadImage
from cnnlab.inference.prediction import PredictResponse, check_threshold
from cnnlab.serving.batching import MicroBatcher, ModelThread
from cnnlab.serving.limits import PixelBudget, default_max_pixels
from cnnlab.serving.options import ServeOptions
from cnnlab.serving.reading import Blobs, RequestReader

SMALL_BYTES, SMALL_PIXELS = 256 * 1024, 256 * 256  # an upload this small decodes in well under a millisecond


class PredictAPI:
    def __init__(self, predictor, options: ServeOptions, on_batch=None, thread: Optional[ModelThread] = None) -> None:
        """``thread``: the model's thread (default: one that measures the model); ``on_batch``: each forward pass's
        image count."""
        self.predictor, self.options = predictor, options
        self.reader = RequestReader(options.max_upload_mb)
        self.batcher = MicroBatcher(self.predict, options.max_batch, options.max_wait_ms, on_batch=on_batch,
                                    thread=thread or ModelThread(predictor))
        # Decoding's own threads: asyncio's hop to a plain pool costs the event loop a third of what AnyIO's
        # run_in_threadpool does (its capacity limiter and cancel scopes), on every request under load.
        self.decoders = ThreadPoolExecutor(thread_name_prefix="cnnlab-decode")
        self.budget = PixelBudget(options.max_pixels or default_max_pixels(predictor.pre.size))
        self.small_pixels = max(SMALL_PIXELS, 4 * predictor.pre.size[0] * predictor.pre.size[1])

    # ------------------------------------------------------------------------- the stages
    def decode_request(self, blobs: Blobs) -> list:
        """Each upload's bytes -> the model's uint8 input (in a decoding thread, or the model's)."""
        images = []
        for filename, data in blobs:
            try:
                images.append(self.predictor.preprocess(data))
            except BadImage as exc:
                exc.source = filename or "the request body"  # bytes have no name of their own: the upload's
                raise
        return images

    def predict(self, images: list) -> list:
        """In the model thread: the outputs, ranked there, a row an image (``top_k`` classes, or a value)."""
        return self.predictor.ranked(self.predictor.outputs(images), self.options.top_k)

    def encode_response(self, rows: list, blobs: Blobs, threshold: Optional[float]) -> Response:
        """The document ``PredictResponse`` describes, serialised by pydantic-core without validating it again
        (FastAPI's validation of a returned model cost ~0.3 ms of a small model's ~2.4 ms round trip)."""
        predictions = self.predictor.predictions(rows, [name for name, _ in blobs], threshold)
        body = PredictResponse.model_construct(predictions=predictions).model_dump_json(by_alias=True)
        return Response(body, media_type="application/json")

    # ------------------------------------------------------------------------- the request
    async def __call__(self, request: Request) -> Response:
        """Top-k classes of each image: multipart ``files`` (or ``file``), or one image as the raw body."""
        asked = request.query_params.get("threshold")
        threshold = check_threshold(asked)  # before the body is read: a bad one is refused at once
        # Announced before its body is read, so that a batch being gathered waits for it.
        with self.batcher.arriving() as token:
            blobs, in_form = await self.reader.read(request)
            if asked is None:
                threshold = self.options.threshold if in_form is None else check_threshold(in_form)
            rows = await self._rows(blobs, token)
        return self.encode_response(rows, blobs, threshold)

    async def _rows(self, blobs: Blobs, token) -> list:
        pre = self.predictor.pre
        pixels = [decoded_pixels(data, pre.channels, pre.size) for _, data in blobs]
        async with self.budget.reserve(self.budget.check(pixels, [name for name, _ in blobs])):  # while decoding
            # One turn of the event loop lets requests already received announce themselves before choosing to
            # run alone.
            await asyncio.sleep(0)
            if self.batcher.alone():  # nobody to share a batch with: decode and predict in one hop
                return await self.batcher.run_alone(lambda: self._decode_and_predict(blobs), len(blobs),
                                                    self._small(blobs, pixels))
            images = await asyncio.get_running_loop().run_in_executor(self.decoders, self.decode_request, blobs)
        return await self.batcher.submit(images, token)  # the forward pass shared with concurrent requests

    def _decode_and_predict(self, blobs: Blobs) -> tuple[list, list]:
        images = self.decode_request(blobs)
        return images, self.predict(images)

    def _small(self, blobs: Blobs, pixels: list) -> bool:
        """A model fast enough to run on the event loop, and one image of few bytes and (from its header) few
        pixels: its decoding cannot hold the event loop long either."""
        return (self.batcher.thread.inline and len(blobs) == 1 and len(blobs[0][1]) <= SMALL_BYTES
                and pixels[0] is not None and pixels[0] <= self.small_pixels)
