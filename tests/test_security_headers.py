"""The exact security headers of every kind of response, as SECURITY.md lists them."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from tests.api_support import Agent
from tests.factories import make_user
from tests.web_support import Visitor
from webapp.settings import HTMX_URL

EXPECTED = {
    "content-security-policy": "; ".join(
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
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
}


def assert_headers(response: httpx.Response, *, cached: bool = False) -> None:
    """Every expected header with its exact value; no-store unless a static file."""
    for name, value in EXPECTED.items():
        assert response.headers.get(name) == value, (response.url, name, response.headers)
    assert "HX-Request" in response.headers["vary"]
    if cached:
        assert response.headers.get("cache-control") != "no-store"
    else:
        assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
async def test_pages_and_errors_carry_the_headers(
    session: AsyncSession, visitor: Visitor, htmx: bool
) -> None:
    """Login page, 404 page, logged-in pages and fragments, and the login redirect."""
    await make_user(session, username="ann")
    responses = [await visitor.get("/login"), await visitor.get("/no-such-page", htmx=htmx)]
    responses.append(await visitor.get("/memories", htmx=htmx))  # not logged in: to /login
    await visitor.log_in("ann")
    responses += [await visitor.get("/", htmx=htmx), await visitor.get("/memories", htmx=htmx)]
    for response in responses:
        assert_headers(response)


async def test_the_api_and_static_files_carry_the_headers(ann: Agent, visitor: Visitor) -> None:
    """JSON answers and errors of the API; static files (which may be cached)."""
    assert_headers(await ann.client.get("/memories"))
    assert_headers(await ann.client.get("/memories/2147483647"))
    assert_headers(await ann.client.get("/memories", headers={"Authorization": "Bearer no"}))
    static = await visitor.get("/static/app.css")
    assert static.status_code == 200
    assert_headers(static, cached=True)
