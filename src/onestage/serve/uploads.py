"""Reading an uploaded image: the request body within a size limit, as a multipart file or
as the raw body, then decoded with the checks of `onestage.data.images`.

Every refusal is an `UploadError` carrying the HTTP status the client gets: 400 for an empty
body, a malformed form or a truncated image, 408 for a body not received in time, 413 for a
body over the limit or an image over the pixel limit (a decompression bomb), 415 for bytes
that are no image.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from starlette.datastructures import UploadFile
from starlette.requests import Request

from onestage.data.images import ImageTooLargeError, NotAnImageError, decode_image_bytes
from onestage.errors import DataError, OnestageError
from onestage.limits import MEGABYTE
from onestage.serve.limits import DEFAULT_READ_TIMEOUT_S


class UploadError(OnestageError):
    """A request the server refuses, with its HTTP `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def read_upload(
    request: Request, limit_bytes: int, timeout_s: float = DEFAULT_READ_TIMEOUT_S
) -> tuple[str, bytes]:
    """(name, encoded image bytes) of a request: the first file of a multipart form (its file
    name), or else the raw body ("body"). A body over `limit_bytes` is refused as soon as it
    says so (Content-Length) or its bytes pass the limit; one not received whole within
    `timeout_s` seconds is refused with 408 (a slow client holds no place for long)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise UploadError(400, f"invalid Content-Length {declared!r}")
        if int(declared) > limit_bytes:
            raise UploadError(413, _too_large(limit_bytes))
    body = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit_bytes:
                    raise UploadError(413, _too_large(limit_bytes))
    except TimeoutError:
        raise UploadError(
            408, f"request body not received within {timeout_s:g} s (--read-timeout)"
        ) from None
    if not body:
        raise UploadError(400, "empty request: send an image as the body or a multipart file")
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        return await _form_file(request, bytes(body))
    return "body", bytes(body)


def decode_upload(name: str, data: bytes, max_pixels: int) -> np.ndarray:
    """The upload as an (H, W, 3) uint8 RGB array, or an UploadError with its status."""
    try:
        return decode_image_bytes(data, name, max_pixels)
    except ImageTooLargeError as error:
        raise UploadError(413, str(error)) from None
    except NotAnImageError as error:
        raise UploadError(415, str(error)) from None
    except DataError as error:
        raise UploadError(400, str(error)) from None


async def _form_file(request: Request, body: bytes) -> tuple[str, bytes]:
    """The first file of a multipart body already read (and size-checked) into `body`."""
    replayed = Request(request.scope, _replay(body))
    try:
        form = await replayed.form()
    except Exception as error:  # Starlette's parser: malformed multipart
        raise UploadError(400, f"malformed multipart form ({error})") from None
    try:
        upload = next((v for v in form.values() if isinstance(v, UploadFile)), None)
        if upload is None:
            raise UploadError(400, "the multipart form has no file")
        return upload.filename or "upload", await upload.read()
    finally:
        await form.close()


def _replay(body: bytes) -> Callable[[], Awaitable[dict[str, Any]]]:
    """An ASGI `receive` that hands `body` over in one message."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _too_large(limit: int) -> str:
    return f"request body over the limit of {limit / MEGABYTE:g} MB (--max-upload-mb)"
