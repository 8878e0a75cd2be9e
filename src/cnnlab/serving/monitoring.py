"""``GET /metrics`` in Prometheus' text format (prometheus-client): requests by path and status, latency,
the images in each forward pass (micro-batching at work), and errors by status.

With ``--workers N`` every worker process counts into files under ``PROMETHEUS_MULTIPROC_DIR`` (set by
``cnnlab serve`` before the workers start), and /metrics adds up all of them, whichever worker answers.
"""
from __future__ import annotations

import os
import time

PATHS = ("/predict", "/health", "/model", "/metrics", "/")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Monitor:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("cnnlab_requests", "HTTP requests by path and status", ["path", "status"],
                                registry=self.registry)
        self.latency = Histogram("cnnlab_request_seconds", "time from the request to the end of the response",
                                 ["path"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("cnnlab_batch_size", "images in each forward pass", buckets=BATCH_BUCKETS,
                                    registry=self.registry)
        self.errors = Counter("cnnlab_errors", "responses with a 4xx or 5xx status, by status", ["status"],
                              registry=self.registry)
        self.refused = Counter("cnnlab_refused_busy", "requests refused with 503 by --limit-concurrency",
                               registry=self.registry)

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
        from prometheus_client.multiprocess import MultiProcessCollector

        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class Measure:
    """ASGI layer: every HTTP response's path, status and latency into the Monitor."""

    def __init__(self, app, monitor: Monitor) -> None:
        self.app, self.monitor = app, monitor

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), [500]

        async def send_and_note(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            path = scope["path"] if scope["path"] in PATHS else "other"
            self.monitor.requests.labels(path, str(status[0])).inc()
            self.monitor.latency.labels(path).observe(time.perf_counter() - start)
            if status[0] >= 400:
                self.monitor.errors.labels(str(status[0])).inc()
