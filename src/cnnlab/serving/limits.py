"""The limits a production proxy would also give, kept by the server itself: the bytes of a body while it
streams, the pixels being decoded at once, and the Host names it answers.

- ``LimitBody``: 413 for a ``/predict`` body over the upload limit, from its Content-Length before it is read,
  or counted as it streams (a chunked body has no Content-Length), multipart included. Multipart parts are
  kept in memory (``in_memory_parts``), so nothing of an upload ever reaches the disk.
- ``PixelBudget``: decoded pixels, per image and across the images being decoded at once. A JPEG much larger
  than the model's input is decoded reduced (libjpeg's draft mode), and counted so.
- ``KnownHosts``: 400 for a Host header the server does not answer to, so that a DNS-rebinding page in a
  browser cannot read a server on 127.0.0.1 (its requests carry the attacker's own host name).

The request line and headers are bounded in the HTTP protocol itself (``http.py``).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Optional, Sequence

from fastapi import HTTPException

MB = 1024 * 1024
BODY_SLACK = 64 * 1024  # a multipart body's framing (boundaries, part headers) on top of the upload limit
DECODE_WAIT_S = 10.0  # a request that finds the pixel budget taken waits this long for it, then gets 503


# ----------------------------------------------------------------------------- body bytes
class LimitBody:
    """413 for a body over ``limit`` bytes on ``paths``: from its Content-Length before anything is read, or
    counted as it streams, before the application sees the bytes past the limit.

    A plain ASGI layer: Starlette's ``@app.middleware("http")`` wraps every request in extra tasks and streams,
    which cost 3 ms a request here (7.8 -> 4.8 ms for a small model's /predict).
    """

    def __init__(self, app, limit: int, max_upload_mb: float, paths: tuple[str, ...] = ("/predict",)) -> None:
        self.app, self.limit, self.max_upload_mb, self.paths = app, limit + BODY_SLACK, max_upload_mb, paths

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            detail = f"upload too large: {int(length) / MB:.1f} MB > {self.max_upload_mb:g} MB"
            await send_json(send, 413, {"detail": detail})
            return
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:  # raised into the reader (the form parser too): answered 413 as JSON
                raise HTTPException(413, f"upload too large: more than {self.max_upload_mb:g} MB sent")
            return message

        await self.app(scope, counted, send)


def in_memory_parts(parser, limit: int):
    """``parser`` (Starlette's ``MultiPartParser``) with its file parts kept in memory: Starlette spools a part
    over 1 MB to a temporary file, and ``LimitBody`` lets no body past ``limit`` through anyway."""
    parser.spool_max_size = limit + BODY_SLACK + 1
    return parser


async def send_json(send, status: int, document: dict, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """A JSON answer sent from an ASGI layer, without building a Response object."""
    body = json.dumps(document).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


# ----------------------------------------------------------------------------- decoded pixels
def default_max_pixels(size: Sequence[int]) -> int:
    """The default ``--max-pixels``: a 4096x4096 image (more than a 12-megapixel phone photo), or 16 times the
    model's input on each side when that is larger. Decoding costs about 5 bytes a pixel at its peak."""
    return max(4096 * 4096, 256 * int(size[0]) * int(size[1]))


class PixelBudget:
    """At most ``total`` decoded pixels at once: an image over it gets 413, and a request whose largest image
    does not fit in what the images being decoded leave waits for room (up to ``wait_s``, then 503 with
    Retry-After). A request decodes its images one after another, so its largest one is what it holds."""

    def __init__(self, total: int, wait_s: float = DECODE_WAIT_S) -> None:
        self.total, self.free, self.wait_s = total, total, wait_s
        self._waiters: list[asyncio.Future] = []

    def check(self, pixels: Sequence[Optional[int]], names: Sequence[Optional[str]]) -> int:
        """What a request's images hold while decoded (``pixels``: each one's, None for an unreadable header,
        which decoding refuses by itself); 413 naming the first image over the budget."""
        for count, name in zip(pixels, names):
            if count is not None and count > self.total:
                raise HTTPException(413, f"{name or 'the request body'}: image too large to decode here: "
                                         f"{count:,} pixels > --max-pixels {self.total:,}; send it smaller")
        return max((count or 0 for count in pixels), default=0)

    @contextlib.asynccontextmanager
    async def reserve(self, pixels: int):
        if pixels > self.free:
            await self._wait(pixels)
        self.free -= pixels
        try:
            yield
        finally:
            self.free += pixels
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._waiters.clear()

    async def _wait(self, pixels: int) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        while pixels > self.free:
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                raise HTTPException(503, f"the server is decoding other large images ({self.total - self.free:,} of "
                                         f"--max-pixels {self.total:,} pixels): retry after 1 s",
                                    headers={"Retry-After": "1"}) from None


# ----------------------------------------------------------------------------- Host names
def normalise_hosts(hosts: Sequence[str]) -> list[str]:
    """Lower case, an IPv6 address in brackets (as a Host header carries it); ``*.example.com`` kept."""
    out = []
    for host in hosts:
        host = host.strip().lower()
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        if host:
            out.append(host)
    return out


def host_name(header: bytes) -> Optional[str]:
    """The host of a Host header without its port (an IPv6 address keeps its brackets); None if malformed."""
    value = header.decode("latin-1").strip().lower()
    if value.startswith("["):
        host, _, rest = value.partition("]")
        host, port = host + "]", rest[1:] if rest.startswith(":") else rest
    else:
        host, _, port = value.partition(":")
    if not host or (port and not port.isdigit()) or any(c in host for c in " /\\@"):
        return None
    return host


class KnownHosts:
    """400 (JSON) for a request whose Host header names none of ``allowed`` (``*``: any; ``*.example.com``: any
    subdomain of example.com), whatever its port."""

    def __init__(self, app, allowed: Sequence[str]) -> None:
        hosts = normalise_hosts(allowed)
        self.app, self.any, self.allowed = app, "*" in hosts, hosts
        self.exact = {h for h in hosts if not h.startswith("*.")}
        self.suffixes = tuple(h[1:] for h in hosts if h.startswith("*."))

    def allows(self, host: Optional[str]) -> bool:
        return host is not None and (host in self.exact or host.endswith(self.suffixes))

    async def __call__(self, scope, receive, send) -> None:
        if self.any or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = next((value for name, value in scope["headers"] if name == b"host"), b"")
        host = host_name(header)
        if self.allows(host):
            await self.app(scope, receive, send)
            return
        said = header.decode("latin-1")[:100]
        detail = (f"Host '{said}' is not served here (allowed: {', '.join(self.allowed)}); to serve it, start the "
                  f"server with --allowed-hosts {host or 'NAME'}" if said else
                  f"no Host header: this server answers {', '.join(self.allowed)}")
        await send_json(send, 400, {"detail": detail})
