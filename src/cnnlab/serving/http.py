"""What the ASGI server does not offer and the service needs: a deadline for a whole request, bounded request
heads, refusals in JSON, and a concurrency limit that says when to come back.

- ``RequestTimeoutHttpTools`` (uvicorn's httptools protocol, the faster: used when httptools is installed,
  as it is with ``cnnlab[serve]``) and ``RequestTimeoutH11`` (its pure-Python h11 protocol): each with one
  more timer. It starts when the connection opens (and again when the first byte of a keep-alive
  connection's next request arrives) and is cancelled when the request is complete, headers and body; a
  connection that has not sent a complete request by then is closed. uvicorn itself has no timeout for
  receiving headers, so 1,000 clients that each send a partial header and then a byte every few seconds
  would hold 1,000 sockets (and file descriptors) for as long as they like. The deadline is
  ``--request-timeout`` seconds: ``request_timeout_protocol(options)`` makes a protocol class that carries it.
- Both bound a request's head (request line and headers) to ``--max-header-kb`` and ``MAX_HEADER_FIELDS`` fields, and answer 431 beyond either. Unbounded, httptools grows a header value
  by concatenation: one value sent in 64 KB pieces costs each read a copy of all that came before (19 MB in:
  28 ms a read; 44 MB held a server's event loop 6.4 s), and 40 connections holding 16 MB of unfinished
  headers each took 538 MB. uvicorn's own 400 for a malformed request becomes JSON too.
- ``LimitConcurrency``: an ASGI layer that answers 503 with ``Retry-After`` while ``limit`` requests to
  the model are already in flight, instead of queuing without bound.
"""
from __future__ import annotations

import asyncio
import json
from typing import Optional

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from cnnlab.serving.options import ServeOptions

MAX_HEADER_FIELDS = 100  # gunicorn's limit_request_fields; a browser sends 10-20
LINGER_S, LINGER_BYTES = 1.0, 1024 * 1024  # after a refusal, the client's bytes are dropped this long, this many
COMPLETE = (h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.ERROR, h11.SWITCHED_PROTOCOL)
REASONS = {400: "Bad Request", 431: "Request Header Fields Too Large"}


class _Refusals:
    """A JSON answer written straight to the connection, which is then closed: for what uvicorn refuses before
    any application sees the request. The client's bytes that follow are read and dropped for ``LINGER_S``
    first (``LINGER_BYTES`` at most), so that closing with unread bytes does not reset the connection before
    the client reads why."""

    _refused = False
    _dropped = 0
    # The request head's limit (default 32 KB: nginx's 4 buffers of 8 KB; gunicorn and h11 allow about 8-16 KB).
    max_head = ServeOptions().max_header_bytes
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop

    def refuse(self, status: int, detail: str) -> None:
        if self._refused or self.transport.is_closing():
            return
        self._refused = True
        body = json.dumps({"detail": detail}).encode()
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                             b"connection: close\r\n\r\n%s" % (status, REASONS[status].encode(), len(body), body))
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()

    def drop(self, data: bytes) -> None:
        """A refused connection's bytes; one that keeps sending is closed at once."""
        self._dropped += len(data)
        if self._dropped > LINGER_BYTES:
            self.transport.close()

    def send_400_response(self, msg: str) -> None:  # uvicorn's answer to a request it cannot parse
        self.refuse(400, "invalid HTTP request: it cannot be read as HTTP/1.1")

    def refuse_head(self, why: str) -> None:
        self.refuse(431, f"request header fields too large: {why}; at most {self.max_head // 1024} KB of request "
                         f"line and headers and {MAX_HEADER_FIELDS} header fields")


class _RequestDeadline:
    """The timer both protocols share: ``_arm`` when a request may begin, ``_disarm`` when it is complete."""

    _request_timer: Optional[asyncio.TimerHandle] = None
    timeout_s = ServeOptions().request_timeout
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport

    def _arm(self) -> None:
        self._disarm()
        self._request_timer = self.loop.call_later(self.timeout_s, self._expire)

    def _disarm(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _expire(self) -> None:
        self._request_timer = None
        if not self.transport.is_closing():
            self.transport.close()


class RequestTimeoutH11(_Refusals, _RequestDeadline, H11Protocol):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # h11's own bound on a head (16 KB by default) answers a bare 400: ours answers 431 first.
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.max_head + 1)

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def _head_too_large(self, data: bytes) -> Optional[str]:
        """Why the head that ``data`` continues is over the limits (h11 reads a head only once it is whole)."""
        head = self.conn.trailing_data[0] + data
        end = head.find(b"\r\n\r\n", 0, self.max_head + 4)
        if end < 0 and len(head) > self.max_head:
            return f"more than {len(head) // 1024} KB and not finished"
        if head.count(b"\n", 0, end if end >= 0 else len(head)) > MAX_HEADER_FIELDS:
            return f"more than {MAX_HEADER_FIELDS} header fields"
        return None

    def data_received(self, data: bytes) -> None:
        if self._refused:
            self.drop(data)
            return
        if self.conn.their_state is h11.IDLE:  # a request's head is arriving
            why = self._head_too_large(data)
            if why is not None:
                self.refuse_head(why)
                return
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
    class RequestTimeoutHttpTools(_Refusals, _RequestDeadline, HttpToolsProtocol):
        """``_head``: the bytes of a head received so far, None while a body arrives. httptools gives no offsets,
        so a read is fed whole when it starts in a body, and up to the limit when it starts in a head; the bytes
        of a head that begins within a read that started elsewhere are not counted (one read's worth at most:
        256 KB with uvloop), so no head reaches the parser with more than the limit and one read."""

        _head: Optional[int] = 0
        _heads = 0  # heads complete on this connection
        _fields = 0
        _too_many = False

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._refused:
                self.drop(data)
                return
            if self._head is None:
                super().data_received(data)
                return
            room = max(0, self.max_head - self._head)
            piece, rest = (data, b"") if len(data) <= room else (data[:room], data[room:])
            heads = self._heads
            super().data_received(piece)
            if self._heads == heads and self._head is not None:  # the same head goes on
                self._head += len(piece)
                if rest:
                    self.refuse_head(f"more than {self.max_head // 1024} KB and not finished")
            elif rest and not self.transport.is_closing():
                self.data_received(rest)

        def on_message_begin(self) -> None:  # the first byte of a request
            super().on_message_begin()
            self._fields = 0
            if self._request_timer is None:  # a new connection's first request keeps the deadline it has
                self._arm()

        def on_header(self, name: bytes, value: bytes) -> None:
            self._fields += 1
            if self._fields > MAX_HEADER_FIELDS:  # stops the parser; uvicorn answers with send_400_response
                self._too_many = True
                raise ValueError("too many header fields")
            super().on_header(name, value)

        def send_400_response(self, msg: str) -> None:
            if self._too_many:
                self.refuse_head(f"more than {MAX_HEADER_FIELDS} header fields")
            else:
                super().send_400_response(msg)

        def on_headers_complete(self) -> None:
            self._head, self._heads = None, self._heads + 1
            super().on_headers_complete()

        def on_message_complete(self) -> None:  # its last byte: headers and body received
            self._disarm()
            self._head = 0  # what follows is the next request's head
            super().on_message_complete()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)


def request_timeout_protocol(options: Optional[ServeOptions] = None, base: Optional[type] = None) -> type:
    """``base`` (default: the fastest HTTP/1.1 protocol installed) with ``options``' request deadline and head limit:
    uvicorn builds a protocol per connection from the class, in each worker process too."""
    base = base or (RequestTimeoutH11 if HttpToolsProtocol is None else RequestTimeoutHttpTools)
    if options is None:
        return base
    return type(base.__name__, (base,), {"timeout_s": options.request_timeout, "max_head": options.max_header_bytes})


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
