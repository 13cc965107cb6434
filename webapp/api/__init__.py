"""The JSON API for agents (SPEC 5): bearer tokens, remember / recall / search / context.

Every route acts for one user: the token's, or for an admin's token the one named by
`user=`. Session cookies never authenticate it, so it needs no CSRF token. Errors are
`{"detail": ...}` (main.py's handlers); a query parameter the route does not know is a
400 (routes._known_parameters_only), as is an unknown sort (here).
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from webapp.api import routes
from webapp.api.routes import API_PREFIX


def mount_api(app: FastAPI) -> None:
    """Add the API's routes and its 400 for unknown parameters to app."""
    app.include_router(routes.router, prefix=API_PREFIX)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        if not request.url.path.startswith(API_PREFIX + "/"):
            return await request_validation_exception_handler(request, exc)
        status = 400 if _names_unknown(exc) else 422
        detail = _finite(jsonable_encoder(exc.errors()))
        return JSONResponse({"detail": detail}, status_code=status)


def _finite(value: Any) -> Any:
    """value with NaN and the infinities as strings: JSON has no such numbers, and an
    error that echoes `"importance": NaN` back must still be an error, not a 500."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list):
        return [_finite(item) for item in value]
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    return value


def _names_unknown(exc: RequestValidationError) -> bool:
    """Whether the request asked for a sort order there is none of (SPEC 5: a 400, where
    other bad values are a 422). Unknown parameters are refused before validation, by
    routes._known_parameters_only."""
    return any(tuple(error.get("loc", ()))[-2:] == ("query", "sort") for error in exc.errors())
