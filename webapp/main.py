"""The application factory: engine, sessions, templates, error handling and routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import FileSystemLoader
from jinja2_fragments.fastapi import Jinja2Blocks
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from webapp import __version__
from webapp.api import mount_api, validation_status
from webapp.db import Database, create_engine
from webapp.db_errors import is_unavailable, unavailable_message
from webapp.errors import MemoryAdminError
from webapp.mcp_server.http import MCP_PATH, McpEndpoint
from webapp.paths import resource_dir
from webapp.request_scope import RequestScope
from webapp.services import vector_index, vectors
from webapp.services.cursors import CursorSigner
from webapp.services.fulltext_language import mismatch_message
from webapp.services.health import database_status
from webapp.settings import Settings, get_settings
from webapp.traffic import Traffic
from webapp.web import mount_admin_app
from webapp.web.filters import describe_problem
from webapp.web.render import error_response, is_api
from webapp.web.security import add_security_headers
from webapp.web.templating import AppEnvironment

logger = logging.getLogger("memory_admin")


async def _embed_in_background(db: Database, traffic: Traffic) -> None:
    """Give new and edited memories their vectors (webapp.services.vectors); the model
    loads in a thread, so the app answers at once."""
    if await anyio.to_thread.run_sync(vectors.enabled):
        await vectors.drain_forever(db, yield_to=traffic)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for settings (the environment's by default); nothing connects yet."""
    settings = settings or get_settings()
    engine = create_engine(settings)

    # One Database for requests and the background embedder: on SQLite its writers take
    # turns on the Database's lock; with one each, the embedder's transactions met the
    # upserts in SQLite's busy handler, which sleeps up to 100 ms a try (4 clients
    # upserting: 26/s, p99 4.5 s).
    db = Database(engine, search_language=settings.search_language)
    traffic = Traffic()
    vector_index.use_one_blas_thread()
    mcp = McpEndpoint(
        db, content_max_bytes=settings.content_max_bytes, max_body_bytes=settings.max_body_bytes
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        embedder = None
        if settings.background_embedding:
            embedder = asyncio.create_task(_embed_in_background(db, traffic))
        yield
        if embedder is not None:
            embedder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await embedder
        await engine.dispose()

    app = FastAPI(
        title="memory-admin",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.db = db
    secret_key = settings.resolve_secret_key()
    app.state.cursor_signer = CursorSigner(secret_key)
    # The templates ship with the package and do not change while it runs: no stat() of
    # every template file on every render (a list page includes its row template 50 times).
    environment = AppEnvironment(
        loader=FileSystemLoader(resource_dir("templates")), autoescape=True, auto_reload=False
    )
    app.state.templates = Jinja2Blocks(env=environment)
    app.mount("/static", StaticFiles(directory=str(resource_dir("static"))), name="static")
    _add_error_handlers(app)
    mount_admin_app(app, settings, secret_key)
    mount_api(app)
    # An ASGI app as a Route's endpoint: /mcp itself, where a Mount would redirect to /mcp/.
    # First in the list: routes are matched in order, and an MCP request that walked past
    # every page's route first spent 0.5 ms on it (a third of what MCP adds to a call).
    # POST only: stateless, /mcp offers no stream to GET (the SDK held one open, idle,
    # counting as a request in flight for ever) and no session to DELETE; both are 405,
    # as the protocol allows.
    app.router.routes.insert(0, Route(MCP_PATH, mcp, methods=["POST"], name="mcp"))
    app.add_middleware(
        RequestScope,
        database=app.state.db,
        content_max_bytes=settings.content_max_bytes,
        traffic=traffic,
    )

    @app.get("/healthz", name="healthz", include_in_schema=False)
    async def healthz() -> Response:
        """200 when the database answers and its schema is current, else 503."""
        try:
            status = await database_status(engine)
        except (OSError, OperationalError, DBAPIError) as exc:
            logger.warning("health check: database unavailable: %s", exc)
            return JSONResponse({"detail": "database unavailable"}, status_code=503)
        if status["revision"] != status["head"]:
            return JSONResponse(
                {"detail": "database schema is not current; run 'memory-admin migrate'"},
                status_code=503,
            )
        built = status["search_language"]
        if built is not None and built != settings.search_language:
            return JSONResponse(
                {"detail": mismatch_message(built, settings.search_language)},  # type: ignore[arg-type]
                status_code=503,
            )
        return JSONResponse({"status": "ok", **status})

    return app


def _add_error_handlers(app: FastAPI) -> None:
    """One handler per error family, each answering through render (web.render's
    error_response): JSON under /api/v1, the HTML error page for pages."""
    render = error_response

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        if is_api(request):
            return render(request, validation_status(exc), jsonable_encoder(errors))
        # A page's form or query: the first problem in words ("username: ..."), not the
        # list, and never the input echoed back.
        return render(
            request, 422, describe_problem(errors[0], skip=1) if errors else "invalid input"
        )

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> Response:
        # Starlette's ServerErrorMiddleware calls this, outside every other middleware
        # (it re-raises afterwards, for the server to see): add the security headers here.
        logger.exception("unexpected error: %s %s", request.method, request.url.path, exc_info=exc)
        response = render(request, 500, "Something went wrong on the server; it was logged.")
        add_security_headers(response.headers, path=request.url.path)
        return response

    @app.exception_handler(MemoryAdminError)
    async def domain_error(request: Request, exc: MemoryAdminError) -> Response:
        return render(request, exc.status_code, str(exc), exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return render(request, exc.status_code, str(exc.detail), exc.headers)

    async def database_down(request: Request, exc: Exception) -> Response:
        if not is_unavailable(exc):
            raise exc  # a bug, not an outage: the 500 it always was
        logger.exception("database unavailable")
        return render(request, 503, unavailable_message(exc))

    # Each family that may mean the database is unreachable or the connection was lost;
    # is_unavailable() decides (webapp.db_errors).
    for family in (DBAPIError, PoolTimeout, OSError):
        app.add_exception_handler(family, database_down)
