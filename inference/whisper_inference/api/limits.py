"""Back-pressure: the upload size limit (enforced while the body streams in) and a bounded queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import APIError, error_body


class UploadLimitMiddleware:
    """413 as soon as a body passes MAX_UPLOAD_MB: by Content-Length up front, else while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        message = f"request body exceeds the upload limit of {self.max_bytes / 2**20:g} MB (MAX_UPLOAD_MB)"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            import json

            body = json.dumps(error_body(413, message, "file", "file_too_large")).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    # raised inside the form parser, so the app's APIError handler answers it
                    raise APIError(413, message, "file", "file_too_large", {"Connection": "close"})
            return msg

        await self.app(scope, limited, send)


class BodyDeadlineMiddleware:
    """408 when a request body has not fully arrived `seconds` after its headers (a client trickling its upload
    would otherwise hold a connection, a spooled temp file and a form parser forever)."""

    def __init__(self, app: ASGIApp, seconds: float):
        self.app, self.seconds = app, seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        complete = False

        async def timed() -> Message:
            nonlocal complete
            if complete:  # later receives wait for a disconnect while the work runs: no deadline for those
                return await receive()
            try:
                msg = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                raise APIError(
                    408,
                    f"the request body did not arrive within {self.seconds:g} s (BODY_TIMEOUT_SECONDS)",
                    None,
                    "request_timeout",
                    {"Connection": "close"},
                ) from None
            if msg["type"] != "http.request" or not msg.get("more_body", False):
                complete = True
            return msg

        await self.app(scope, timed, send)


class AdmissionControl:
    """At most `concurrent` requests in the engine and `queue` waiting; beyond that, refuse (429)."""

    def __init__(self, concurrent: int, queue: int):
        self.concurrent, self.queue = concurrent, queue
        self.in_flight = 0
        self.waiting = 0
        self._slots = asyncio.Semaphore(concurrent)

    @asynccontextmanager
    async def admit(self, refuse_when_full: bool = True) -> AsyncIterator[None]:
        if refuse_when_full and self.in_flight >= self.concurrent and self.waiting >= self.queue:
            raise APIError(
                429,
                f"server is at capacity ({self.concurrent} in flight, {self.queue} queued); retry later",
                None,
                "rate_limit_exceeded",
                {"Retry-After": "1"},
            )
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            self._slots.release()
