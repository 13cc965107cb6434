"""ASGI middleware for every response: security headers, `Vary: HX-Request`, body limit.

Pure ASGI (not BaseHTTPMiddleware), so streamed responses and request bodies pass
through without being buffered.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from webapp.settings import HTMX_URL


def content_security_policy() -> str:
    """Scripts only from this app and the pinned htmx file; no inline script, no eval."""
    return "; ".join(
        (
            "default-src 'self'",
            f"script-src 'self' {HTMX_URL}",
            "style-src 'self'",
            "img-src 'self' data:",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
            "form-action 'self'",
        )
    )


class SecurityHeaders:
    """Adds the security headers, `Vary: HX-Request` and, off /static, `no-store`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                add_security_headers(MutableHeaders(scope=message), path=scope["path"])
            await send(message)

        await self.app(scope, receive, send_with_headers)


_CSP = content_security_policy()


def add_security_headers(headers: MutableHeaders, *, path: str) -> None:
    """Set the headers every response carries (SecurityHeaders; the 500 handler, which
    answers outside the middleware)."""
    headers.setdefault("Content-Security-Policy", _CSP)
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "same-origin"
    headers["X-Frame-Options"] = "DENY"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers.add_vary_header("HX-Request")
    if not path.startswith("/static/"):
        headers["Cache-Control"] = "no-store"


class BodyTooLarge(Exception):
    """Raised inside receive() once a streamed body passes the limit."""


class BodyLimit:
    """413 for a request body over max_bytes, before it is read whole.

    A declared Content-Length over the limit is refused at once; a body without one
    (chunked) is counted as it streams in and refused when it passes the limit.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = f"{self.max_bytes:,} bytes"
        response = (
            JSONResponse({"detail": f"request body too large (limit {limit})"}, status_code=413)
            if scope["path"].startswith("/api/")
            else PlainTextResponse(f"Request body too large (limit {limit}).", status_code=413)
        )
        await response(scope, receive, send)
