"""What every HTTP request gets from the app: its Database (a FastAPI dependency), one
pinned read connection, and the app's own input limits. Shared by the pages and the API;
the service layer never imports it, so it imports without the web framework."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import ASGIApp, Receive, Scope, Send

from webapp.db import Database
from webapp.traffic import Traffic
from webapp.validation import content_limit


class RequestScope:
    """ASGI middleware: each HTTP request's read sessions share one connection
    (Database.pinned_reads), handed back once the response is sent, its input is
    validated with this app's CONTENT_MAX_BYTES, and it counts in the app's Traffic (one
    layer for all three: each costs a call)."""

    def __init__(
        self, app: ASGIApp, *, database: Database, content_max_bytes: int, traffic: Traffic
    ) -> None:
        self.app = app
        self.database = database
        self.content_max_bytes = content_max_bytes
        self.traffic = traffic

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.traffic.started()
        try:
            with content_limit(self.content_max_bytes):
                async with self.database.pinned_reads():
                    await self.app(scope, receive, send)
        finally:
            self.traffic.ended()


def database(request: Request) -> Database:
    """The app's Database."""
    db: Database = request.app.state.db
    return db


async def _database_dependency(request: Request) -> Database:
    # Async: FastAPI runs a plain `def` dependency in a worker thread, a hop that costs
    # more than the lookup.
    return database(request)


DatabaseDep = Annotated[Database, Depends(_database_dependency)]
"""The app's Database, for the admin pages and the API alike."""


async def get_async_session(request: Request) -> AsyncIterator[AsyncSession]:
    """FastAPI dependency: a session of the app's Database for one request (its writes are
    committed when the request's handler returns without error).

    The pages and the API call services with a Database instead; this is for code built on
    the app that wants a plain session, with expire_on_commit=False like every session here.
    """
    async with database(request).write() as session:
        yield session
