"""A person at a browser, for HTTP-level tests of the admin app (flaskr's AuthActions)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from bs4 import BeautifulSoup
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.factories import PASSWORD
from webapp.main import create_app
from webapp.settings import Settings


def parse(response: httpx.Response) -> BeautifulSoup:
    """The response body as parsed HTML."""
    return BeautifulSoup(response.text, "html.parser")


class Visitor:
    """An httpx client with a cookie jar that logs in and posts forms like a browser."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.csrf_token = ""

    async def get(self, url: str, *, htmx: bool = False, **headers: str) -> httpx.Response:
        """GET url as a browser (Accept: text/html) or as htmx; remembers the CSRF token."""
        sent = {"accept": "text/html", **headers}
        if htmx:
            sent["HX-Request"] = "true"
        response = await self.client.get(url, headers=sent)
        found = re.search(r'"X-CSRF-Token": "([^"]+)"', response.text)
        if found:
            self.csrf_token = found.group(1)
        return response

    async def post(
        self,
        url: str,
        data: dict[str, Any] | None = None,
        *,
        htmx: bool = False,
        csrf: bool = True,
        **headers: str,
    ) -> httpx.Response:
        """POST a form; htmx sends the token in X-CSRF-Token, a plain form in csrf_token."""
        fields = dict(data or {})
        sent = {"accept": "text/html", **headers}
        if htmx:
            sent["HX-Request"] = "true"
            if csrf:
                sent["X-CSRF-Token"] = self.csrf_token
        elif csrf:
            fields.setdefault("csrf_token", self.csrf_token)
        return await self.client.post(url, data=fields, headers=sent)

    async def log_in(
        self, username: str, password: str = PASSWORD, *, next: str = "/"
    ) -> httpx.Response:
        """Fill in and send the login form."""
        page = await self.get("/login")
        token = parse(page).select_one("input[name=csrf_token]")
        assert token is not None, page.text
        response = await self.client.post(
            "/login",
            data={
                "username": username,
                "password": password,
                "csrf_token": token["value"],
                "next": next,
            },
        )
        if response.status_code == 303:
            await self.get("/")
        return response


@pytest.fixture(scope="module")
async def app(settings: Settings, engine: AsyncEngine) -> AsyncIterator[FastAPI]:
    """The app on the module's migrated database."""
    application = create_app(settings)
    try:
        yield application
    finally:
        await application.state.engine.dispose()


@asynccontextmanager
async def asgi_clients(
    app: FastAPI, *, address: str, base_url: str
) -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    """Opens in-process clients of app from address (keyword arguments: their headers),
    each with its own cookies; all are closed when the block ends."""
    clients: list[httpx.AsyncClient] = []

    def open_one(**headers: str) -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=(address, 50000)),
            base_url=base_url,
            headers=headers,
        )
        clients.append(client)
        return client

    try:
        yield open_one
    finally:
        for client in clients:
            await client.aclose()


@pytest.fixture
async def open_visitor(app: FastAPI, db: AsyncEngine) -> AsyncIterator[Callable[[], Visitor]]:
    """Opens a new browser-like visitor (its own cookies); tables are emptied afterwards."""
    async with asgi_clients(app, address="203.0.113.7", base_url="http://testserver") as opener:
        yield lambda: Visitor(opener())


@pytest.fixture
def visitor(open_visitor: Callable[[], Visitor]) -> Visitor:
    """One visitor, not logged in yet."""
    return open_visitor()
