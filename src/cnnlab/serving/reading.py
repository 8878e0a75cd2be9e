"""A /predict request's images and threshold, read from its body: multipart (``files`` or ``file`` parts, and a
``threshold`` field), or one image as the raw body. Bytes are counted as they arrive; nothing is written to disk."""
from __future__ import annotations

from typing import Optional

from fastapi import HTTPException, Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from cnnlab.serving.limits import in_memory_parts

MB = 1024 * 1024
MAX_PARTS = 64  # file parts (and other fields) in one multipart request: more is refused before it is read
RAW_TYPES = ("image/", "application/octet-stream")
Blobs = list[tuple[Optional[str], bytes]]  # (file name, bytes): None names the raw body


class RequestReader:
    def __init__(self, max_upload_mb: float) -> None:
        self.max_upload_mb, self.limit = max_upload_mb, int(max_upload_mb * MB)

    async def read(self, request: Request) -> tuple[Blobs, Optional[str]]:
        """The images, and the threshold a multipart form sent (None otherwise)."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        threshold = None
        if kind == "multipart/form-data":
            blobs, threshold = await self.multipart(request)
        elif kind.startswith(RAW_TYPES):
            blobs = [(None, await self.raw_body(request))]
        elif not kind:  # nothing said about a body: nothing sent
            blobs = []
        else:
            raise HTTPException(415, f"unsupported Content-Type '{kind or 'none'}': send multipart/form-data with a "
                                     f"'files' field, or the image itself as image/* or application/octet-stream")
        if not blobs:
            raise HTTPException(422, "no image: send it as a multipart/form-data field named 'files' (or 'file'), "
                                     "e.g. curl -F files=@digit.png http://HOST/predict, or as the raw body with "
                                     "Content-Type: image/png")
        return blobs, threshold

    async def multipart(self, request: Request) -> tuple[Blobs, Optional[str]]:
        # More parts than MAX_PARTS are refused with a 400 before they are all read; the parts stay in memory.
        parser = in_memory_parts(MultiPartParser(request.headers, request.stream(), max_files=MAX_PARTS,
                                                 max_fields=MAX_PARTS), self.limit)
        try:
            form = await parser.parse()
        except MultiPartException as exc:
            raise HTTPException(400, exc.message) from None
        try:
            threshold = form.get("threshold")
            if isinstance(threshold, UploadFile):
                threshold = (await threshold.read(64)).decode("latin-1")
            return [await self._part(part) for part in [*form.getlist("files"), *form.getlist("file")]], threshold
        finally:
            await form.close()

    async def _part(self, part) -> tuple[Optional[str], bytes]:
        if not isinstance(part, UploadFile):
            raise HTTPException(422, "the 'files' field holds text, not a file: send it as a file part "
                                     "(curl -F files=@digit.png)")
        data = await part.read(self.limit + 1)
        if len(data) > self.limit:
            raise HTTPException(413, f"{part.filename}: upload too large (> {self.max_upload_mb:g} MB)")
        return part.filename, data

    async def raw_body(self, request: Request) -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():  # bounded as it arrives (a body without a Content-Length too)
            if chunk:
                chunks.append(chunk)
                size += len(chunk)
            if size > self.limit:
                raise HTTPException(413, f"upload too large (> {self.max_upload_mb:g} MB)")
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)  # one copy at most
