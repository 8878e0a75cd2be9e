"""What the ASGI server does not offer and the service needs: a deadline for a whole request, and a
concurrency limit that says when to come back.

- ``RequestTimeoutHttpTools`` (uvicorn's httptools protocol, the faster: used when httptools is installed,
  as it is with ``cnnlab[serve]``) and ``RequestTimeoutH11`` (its pure-Python h11 protocol): each with one
  more timer. It starts when the connection opens (and again when the first byte of a keep-alive
  connection's next request arrives) and is cancelled when the request is complete, headers and body; a
  connection that has not sent a complete request by then is closed. uvicorn itself has no timeout for
  receiving headers, so 1,000 clients that each send a partial header and then a byte every few seconds
  would hold 1,000 sockets (and file descriptors) for as long as they like. The deadline is
  ``CNNLAB_REQUEST_TIMEOUT`` seconds (set by ``cnnlab serve --request-timeout``; an environment variable
  because uvicorn's worker processes rebuild the protocol from an import path).
- ``LimitConcurrency``: an ASGI layer that answers 503 with ``Retry-After`` while ``limit`` requests to
  the model are already in flight, instead of queuing without bound.
"""
from __future__ import annotations

import asyncio
import json
import os
from typing import Optional

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

TIMEOUT_ENV = "CNNLAB_REQUEST_TIMEOUT"
DEFAULT_REQUEST_TIMEOUT = 30.0
COMPLETE = (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR, h11.SWITCHED_PROTOCOL)


class _RequestDeadline:
    """The timer both protocols share: ``_arm`` when a request may begin, ``_disarm`` when it is complete."""

    _request_timer: Optional[asyncio.TimerHandle] = None
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport

    def _arm(self) -> None:
        self._disarm()
        seconds = float(os.environ.get(TIMEOUT_ENV, DEFAULT_REQUEST_TIMEOUT))
        self._request_timer = self.loop.call_later(seconds, self._expire)

    def _disarm(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _expire(self) -> None:
        self._request_timer = None
        if not self.transport.is_closing():
            self.transport.close()


class RequestTimeoutH11(_RequestDeadline, H11Protocol):
    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state in COMPLETE:
            self._disarm()
        elif self._request_timer is None:  # the first bytes of a keep-alive connection's next request
            self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state not in COMPLETE and self.conn.their_state is not h11.IDLE:
            return  # a pipelined request is already being received: its timer runs
        self._disarm()  # idle between requests: uvicorn's keep-alive timeout closes it

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is not installed: RequestTimeoutH11 serves
    HttpToolsProtocol = None
else:
    class RequestTimeoutHttpTools(_RequestDeadline, HttpToolsProtocol):
        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:  # the first byte of a request
            super().on_message_begin()
            if self._request_timer is None:  # a new connection's first request keeps the deadline it has
                self._arm()

        def on_message_complete(self) -> None:  # its last byte: headers and body received
            self._disarm()
            super().on_message_complete()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)


def request_timeout_protocol() -> type:
    """The fastest HTTP/1.1 protocol installed, with the request deadline."""
    return RequestTimeoutH11 if HttpToolsProtocol is None else RequestTimeoutHttpTools


class LimitConcurrency:
    """503 + Retry-After for a request to ``paths`` while ``limit`` of them are in flight."""

    def __init__(self, app, limit: Optional[int], paths: tuple[str, ...] = ("/predict",), retry_after: int = 1,
                 on_refuse=None) -> None:
        self.app, self.limit, self.paths, self.retry_after, self.on_refuse = app, limit, paths, retry_after, on_refuse
        self.in_flight = 0

    async def __call__(self, scope, receive, send) -> None:
        if self.limit is None or scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            if self.on_refuse is not None:
                self.on_refuse()
            body = json.dumps({"detail": f"the server is busy ({self.limit} requests in flight): retry after "
                                         f"{self.retry_after} s"}).encode()
            await send({"type": "http.response.start", "status": 503,
                        "headers": [(b"content-type", b"application/json"), (b"retry-after", str(self.retry_after).encode()),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
