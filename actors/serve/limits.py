"""What one request may cost the API replica: its body's size, its time to a response, the pictures
it uploads. Kept apart from app.py so the routes stay about the API.

``RequestLimits`` is plain ASGI middleware on the FastAPI app. The app object is frozen (copied) when
``@serve.ingress`` decorates the deployment, before a replica knows its settings, so the middleware
reads its limits from this module at call time and ``MantaApi.__init__`` sets them (one replica per
process).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import io
import json
import warnings

from fastapi import HTTPException

MB = 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000  # a 40 MP upload decodes to 120 MB of RGB: enough for any photo or frame
IMAGE_FORMATS = ("PNG", "JPEG")  # what PIL may decode: its other formats (EPS runs Ghostscript) may not

_limits = {"max_body_bytes": 16 * MB, "request_timeout_s": 120.0}


def set_limits(max_body_mb: float, request_timeout_s: float) -> None:
    _limits.update(max_body_bytes=int(max_body_mb * MB), request_timeout_s=float(request_timeout_s))


async def json_reply(send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    """A FastAPI-shaped error (``{"detail": …}``) sent by an ASGI middleware, before any route runs."""
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class RequestLimits:
    """413 for a body over ``max_body_bytes`` (by its Content-Length before anything is read, or as
    it arrives when it is chunked); 504 when no response has started within ``request_timeout_s``.
    A response that has started (a streamed answer) runs on: its own steps have their own bounds."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit, timeout = _limits["max_body_bytes"], _limits["request_timeout_s"]
        too_large = f"request body larger than {limit / MB:g} MB (max_body_mb)"
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return await json_reply(send, 413, too_large)
        received, started = 0, asyncio.Event()

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:  # FastAPI passes an HTTPException from reading the body on
                    raise HTTPException(413, detail=too_large)
            return message

        async def watched_send(message):
            if message["type"] == "http.response.start":
                started.set()
            await send(message)

        task = asyncio.ensure_future(self.app(scope, limited_receive, watched_send))
        waiter = asyncio.ensure_future(started.wait())
        try:
            await asyncio.wait({task, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if not task.done() and not started.is_set():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if not started.is_set():
                await json_reply(send, 504, f"no response within {timeout:g} s (request_timeout_s)")
            return
        await task


def decode_image(image_b64: str):
    """An uploaded base64 PNG/JPEG as an H x W x 3 uint8 RGB array; ValueError says what is wrong.
    Its size is bounded by the request body's (max_body_mb)."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        raw = base64.b64decode(image_b64, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("'image' is not valid base64") from None
    try:
        # Only PNG and JPEG are even identified; a picture bigger than the cap is refused by its
        # header, before it is decoded (PIL warns, then raises, past its own bomb limit).
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw), formats=IMAGE_FORMATS) as img:
                if img.width * img.height > MAX_IMAGE_PIXELS:
                    raise ValueError(f"'image' is {img.width}x{img.height}: more than "
                                     f"{MAX_IMAGE_PIXELS // 1_000_000} million pixels")
                return np.asarray(img.convert("RGB"))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValueError("'image' has too many pixels to decode safely") from None
    except (UnidentifiedImageError, OSError, SyntaxError):
        # SyntaxError: how some PIL plugins report a damaged header.
        raise ValueError("'image' is not a PNG or JPEG picture") from None
