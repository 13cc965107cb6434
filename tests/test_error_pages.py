"""Errors answer in the request's language (issue 13, point 6), on SQLite and on
PostgreSQL: an unexpected exception is a JSON 500 under /api/v1 and the error page on a
page, logged with its traceback; a page's form that fails validation gets the error page
with a message, never FastAPI's JSON list."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.web_support import Visitor, parse
from webapp.main import create_app
from webapp.settings import Settings


class Bug(Exception):
    """What a route raises when it has a bug."""


@pytest.fixture(scope="module")
async def buggy_app(settings: Settings, engine: AsyncEngine) -> AsyncIterator[FastAPI]:
    """The app with an API route and a page that fail as a bug would."""
    application = create_app(settings)

    async def broken() -> None:
        raise Bug("the secret details of a bug")

    application.add_api_route("/api/v1/broken", broken)
    application.add_api_route("/broken", broken)
    try:
        yield application
    finally:
        await application.state.engine.dispose()


@pytest.fixture
async def client(buggy_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client that gets the 500 response (Starlette re-raises the error for the server
    after sending it, which the ASGI transport would otherwise raise in the test)."""
    transport = httpx.ASGITransport(app=buggy_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def _logged_bug(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    (record,) = [r for r in caplog.records if r.name == "memory_admin" and r.exc_info]
    assert record.exc_info is not None and record.exc_info[0] is Bug
    return record


async def test_an_unexpected_error_in_the_api_is_a_json_500(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """JSON even for a client that asks for HTML; the bug's details stay in the log."""
    response = await client.get("/api/v1/broken", headers={"accept": "text/html"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"detail"} and body["detail"]
    assert "secret" not in response.text
    assert "GET /api/v1/broken" in _logged_bug(caplog).getMessage()


@pytest.mark.parametrize("headers", [{"accept": "text/html"}, {"hx-request": "true"}])
async def test_an_unexpected_error_on_a_page_is_the_error_page(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, headers: dict[str, str]
) -> None:
    """The error page, with the headers every page has, though it is answered outside the
    middleware that adds them."""
    response = await client.get("/broken", headers=headers)
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("text/html")
    page = parse(response)
    assert page.select_one(".error-page h1").get_text() == "500"
    assert page.select_one(".error-message").get_text()
    assert "secret" not in response.text
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    _logged_bug(caplog)


LOGIN_FORMS: list[dict[str, Any]] = [
    {"data": {"username": "a" * 151, "password": "x", "csrf_token": "x"}},
    {"data": {"password": "x", "csrf_token": "x"}, "files": {"username": ("u.txt", b"ann")}},
    {"data": {"username": "ann", "password": "x", "next": "/" + "n" * 2000}},
]


@pytest.mark.parametrize("form", LOGIN_FORMS, ids=["too-long", "a-file", "long-next"])
@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
async def test_a_form_that_fails_validation_gets_the_page_with_a_message(
    visitor: Visitor, form: dict[str, Any], htmx: bool
) -> None:
    """/login's fields are checked by FastAPI before the route runs; what was wrong is said
    in words on the error page, and the input is not echoed back."""
    headers = {"accept": "text/html", **({"hx-request": "true"} if htmx else {})}
    response = await visitor.client.post("/login", headers=headers, **form)
    assert response.status_code == 422, response.text[:300]
    assert response.headers["content-type"].startswith("text/html")
    page = parse(response)
    assert page.select_one(".error-page h1").get_text() == "422"
    message = page.select_one(".error-message").get_text()
    field = "next" if "next" in form["data"] else "username"
    assert message.startswith(f"{field}: "), message
    assert "aaaa" not in response.text and "nnnn" not in response.text
