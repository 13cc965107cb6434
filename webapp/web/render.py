"""One place that decides full page or htmx fragment, the flash message after a redirect,
and the language of an error (the HTML error page or JSON).

A page template holds its fragments as blocks; a handler names the block an htmx
request swaps, and `render` returns the whole page unless the request came from htmx
(and is not a history restore, which needs the whole page).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from itsdangerous import BadSignature

from webapp.web.deps import LOGIN_CSRF_COOKIE, cookie_signer

FLASH_COOKIE = "ma_flash"


def is_htmx(request: Request) -> bool:
    """True for an htmx request that wants a fragment (a history restore wants the page)."""
    return (
        request.headers.get("HX-Request") == "true"
        and request.headers.get("HX-History-Restore-Request") != "true"
    )


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    block: str | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """The page, or only its `block` for an htmx request; the flash shown once."""
    values: dict[str, Any] = {
        "visitor": getattr(request.state, "visitor", None),
        "flash": _read_flash(request),
        **(context or {}),
    }
    fragment = block if block is not None and is_htmx(request) else None
    response: Response = request.app.state.templates.TemplateResponse(
        request,
        template,
        values,
        status_code=status_code,
        headers=headers,
        block_name=fragment,
    )
    if FLASH_COOKIE in request.cookies:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


def redirect(
    request: Request,
    url: str,
    *,
    message: str | None = None,
    undo_id: int | None = None,
    undo_token: str | None = None,
) -> Response:
    """Post/Redirect/Get (303), with an optional flash message and an undo for a delete
    (undo_id: one memory; undo_token: a bulk delete, signed by web/bulk.py)."""
    response = RedirectResponse(url, status_code=303)
    if message is not None:
        payload = json.dumps({"message": message, "undo_id": undo_id, "undo_token": undo_token})
        response.set_cookie(
            FLASH_COOKIE,
            cookie_signer(request).sign(payload.encode()).decode(),
            max_age=60,
            path="/",
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )
    return response


def _read_flash(request: Request) -> dict[str, Any] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        value = json.loads(cookie_signer(request).unsign(raw))
    except (BadSignature, ValueError):
        return None
    return value if isinstance(value, dict) else None


def set_login_csrf_cookie(request: Request, response: Response, token: str) -> None:
    """The double-submit token of the login form (there is no session yet to hold it)."""
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=3600,
        path="/login",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def is_api(request: Request) -> bool:
    """Whether the request is for the JSON API, whose errors are JSON whatever it accepts."""
    return request.url.path.startswith("/api/")


def error_response(
    request: Request, status_code: int, detail: Any, headers: Mapping[str, str] | None = None
) -> Response:
    """An error in the request's language: `{"detail": ...}` under /api/ and for clients
    that do not ask for HTML; else the error page."""
    detail = _encodable(detail)
    if not is_api(request) and (
        "text/html" in request.headers.get("accept", "") or is_htmx(request)
    ):
        return render(
            request,
            "errors/error.html",
            {"status_code": status_code, "message": str(detail)},
            status_code=status_code,
            headers=dict(headers) if headers else None,
        )
    return JSONResponse({"detail": detail}, status_code=status_code, headers=headers)


def _encodable(value: Any) -> Any:
    """value with what JSON and UTF-8 cannot carry spelled out: NaN and the infinities as
    strings, lone surrogates (valid in a JSON string, not in UTF-8) as `\\udXXX`. An error
    that echoes the bad input back must still be an error, not a 500."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list | tuple):
        return [_encodable(item) for item in value]
    if isinstance(value, dict):
        return {_encodable(key): _encodable(item) for key, item in value.items()}
    return value
