"""ASGI middleware for every response: security headers, `Vary: HX-Request`, body limits.

Pure ASGI (not BaseHTTPMiddleware), so streamed responses and request bodies pass
through without being buffered.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from webapp.settings import HTMX_URL
from webapp.web.render import error_response


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


class BodyTooLarge(HTTPException):
    """A request body over its limit: raised inside receive() as an HTTPException, which
    FastAPI's body parsing lets through (any other error there becomes a 400), so the app's
    handler answers 413 in the request's language."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body too large (limit {limit:,} bytes)")


class BodyLimit:
    """413 for a request body over its limit, before it is read whole.

    The limit is max_bytes, or the one `limits` gives the request's path (an upload that
    may be larger). A declared Content-Length over it is refused at once; a body without
    one (chunked) is counted as it streams in, and reading stops as it passes the limit.
    """

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, limits: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.limits = dict(limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.get(scope["path"], self.max_bytes)
        declared = Headers(scope=scope).get("content-length", "")
        # Over 18 digits is over any limit, and int() refuses over 4,300 of them.
        if (
            declared.isascii()
            and declared.isdigit()
            and (len(declared) > 18 or int(declared) > limit)
        ):
            request = Request(scope, receive)
            response = error_response(request, 413, BodyTooLarge(limit).detail)
            await response(scope, receive, send)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counting_receive, send)
