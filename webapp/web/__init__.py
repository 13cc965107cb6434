"""The browser admin app: routers, middleware, templates' helpers, error pages."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from itsdangerous import Signer

from webapp.settings import HTMX_INTEGRITY, HTMX_URL, Settings
from webapp.web import (
    auth,
    bulk,
    duplicates,
    erase,
    history,
    memories,
    memory_edits,
    namespaces,
    pages,
    people,
    tokens,
    transfer,
    trash,
)
from webapp.web.deps import LoginRequired
from webapp.web.filters import owner_links, url_with, with_edit, without_edit
from webapp.web.render import is_htmx
from webapp.web.security import BodyLimit, SecurityHeaders
from webapp.web.templating import RoutePaths, install_template_helpers

PAGE_ROUTERS = (
    auth.router,
    pages.router,
    transfer.export_router,  # before memories.router, whose /memories/{id} would take it
    memories.router,
    memory_edits.router,
    trash.router,
    tokens.router,
    people.router,
    erase.router,
    history.router,
    namespaces.router,
    duplicates.router,
    transfer.router,
    bulk.router,
)
"""The admin pages' routers, in the order they are matched. Their route names are what
templates' path_for() finds: the API's routes come after them, where a name the two
share (list_memories) still finds the page."""


def mount_admin_app(app: FastAPI, settings: Settings, secret_key: str) -> None:
    """Add the admin pages, their middleware and the login redirect to app."""
    app.state.cookie_signer = Signer(secret_key, salt="memory-admin.cookie")
    install_template_helpers(
        app.state.templates,
        url_with=url_with,
        owner_links=owner_links,
        with_edit=with_edit,
        without_edit=without_edit,
        bulk_filter_fields=bulk.bulk_filter_fields,
        bulk_actions=bulk.bulk_actions,
        path_for=RoutePaths(app.url_path_for),
        htmx_url=HTMX_URL,
        htmx_integrity=HTMX_INTEGRITY,
    )
    for router in PAGE_ROUTERS:
        app.include_router(router, include_in_schema=False)
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_body_bytes,
        limits={app.url_path_for("upload_import"): settings.import_max_bytes},
    )
    app.add_middleware(SecurityHeaders)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        target = request.app.url_path_for("login_form")
        if exc.next_path not in ("", "/"):
            target += "?" + urlencode({"next": exc.next_path})
        if is_htmx(request):
            return Response(status_code=401, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)
