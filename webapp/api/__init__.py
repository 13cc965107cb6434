"""The JSON API for agents: bearer tokens, remember / recall / search / context.

Every route acts for one user: the token's, or for an admin's token the one named by
`user=`. Session cookies never authenticate it, so it needs no CSRF token. Errors are
`{"detail": ...}` (main.py's handlers); a query parameter the route does not know is a
400 (routes._known_parameters_only), as is an unknown sort (validation_status).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from webapp.api import routes
from webapp.api.routes import API_PREFIX


def mount_api(app: FastAPI) -> None:
    """Add the API's routes to app."""
    app.include_router(routes.router, prefix=API_PREFIX)


def validation_status(exc: RequestValidationError) -> int:
    """The status of a request the API's schemas refuse: 422, except for a sort order there
    is none of (a 400, where other bad values are a 422). Unknown parameters are
    refused before validation, by routes._known_parameters_only."""
    names_unknown = any(
        tuple(error.get("loc", ()))[-2:] == ("query", "sort") for error in exc.errors()
    )
    return 400 if names_unknown else 422
