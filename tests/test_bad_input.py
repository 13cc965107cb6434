"""Bad input never gives a 5xx (issue 13, C and D), on SQLite and on PostgreSQL: lone
surrogates in JSON are refused with their 4xx, and ids no memory can have (past 32 bits,
past 64 bits, not numbers) are the admin pages' 404, like an id that is not yours."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import make_memory, make_token, make_user
from tests.web_support import Visitor, asgi_clients, parse
from webapp.models import LongTermMemory

# The bodies below are JSON text with a lone surrogate as JSON writes it (\ud800): valid
# JSON, but not valid UTF-8 once decoded.


@pytest.fixture
async def agent(app: FastAPI, session: AsyncSession) -> AsyncIterator[httpx.AsyncClient]:
    """ann's API client (bearer token) on /api/v1."""
    user = await make_user(session, username="ann")
    _token, secret = await make_token(session, user=user, name="agent")
    base_url = "http://testserver/api/v1"
    async with asgi_clients(app, address="203.0.113.9", base_url=base_url) as opener:
        yield opener(Authorization=f"Bearer {secret}")


async def _contents(session: AsyncSession) -> list[tuple[str, str]]:
    await session.commit()  # a new transaction: see what the app has written since
    rows = await session.execute(select(LongTermMemory.key, LongTermMemory.content))
    return sorted((key, content) for key, content in rows)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/memories", '{"namespace":"n","key":"k","content":"half \\ud800 pair"}'),
        ("PUT", "/memories", '{"namespace":"n","key":"k\\ud800","content":"x"}'),
        ("PUT", "/memories", '{"namespace":"n\\ud800","key":"k","content":"x"}'),
        ("PUT", "/memories", '{"namespace":"n","key":"k","content":"x","tags":["a\\ud800"]}'),
        ("PUT", "/memories", '{"namespace":"n","key":"k","content":"x","\\ud800":1}'),
        ("PUT", "/memories", '{"namespace":"n","key":"k","content":"x","expires_at":"\\ud800"}'),
        ("PATCH", "/memories/{id}", '{"version":1,"content":"a\\ud800"}'),
        ("PATCH", "/memories/{id}", '{"version":1,"tags":["a\\ud800"]}'),
        ("POST", "/search", '{"query":"tea\\ud800"}'),
        ("POST", "/context", '{"query":"tea\\ud800","max_chars":100}'),
    ],
    ids=[
        "content",
        "key",
        "namespace",
        "tag",
        "field-name",
        "expiry",
        "patch-content",
        "patch-tag",
        "search",
        "context",
    ],
)
async def test_a_lone_surrogate_is_refused_with_a_4xx(
    session: AsyncSession, agent: httpx.AsyncClient, method: str, path: str, body: str
) -> None:
    """The 422 that echoes the input back could not encode it and was a 500; now the
    surrogate comes back spelled out, and nothing is written."""
    created = await agent.put("/memories", json={"namespace": "n", "key": "base", "content": "x"})
    assert created.status_code == 201
    before = await _contents(session)
    response = await agent.request(
        method,
        path.format(id=created.json()["id"]),
        content=body.encode(),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["detail"]
    assert await _contents(session) == before


async def test_the_echoed_input_shows_the_surrogate(agent: httpx.AsyncClient) -> None:
    """The client sees what was wrong: the bad character as an escape, the rest as sent."""
    body = '{"namespace":"n","key":"k","content":"half \\ud800 pair"}'
    response = await agent.put(
        "/memories", content=body.encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "content"]
    assert error["input"] == "half \\ud800 pair"


NOT_IDS = ["2147483648", "9223372036854775808", "99999999999999999999", "abc", "0", "-1", "²"]
"""Past PostgreSQL's int4 (its 500), past SQLite's int64 (its 500), far past both, not a
number (FastAPI's JSON 422), no id, and a digit Python's str.isdigit() takes but int()
refuses."""

PAGE_ROUTES = [
    ("GET", "/memories/{id}"),
    ("GET", "/memories/{id}/editor"),
    ("GET", "/memories/{id}/row"),
    ("POST", "/memories/{id}/delete"),
    ("POST", "/memories/{id}/restore"),
    ("POST", "/memories/{id}/importance"),
    ("POST", "/memories/{id}/edit"),
    ("POST", "/memories/{id}/tags/add"),
    ("POST", "/memories/{id}/tags/remove"),
]
FORM = {"importance": "0.5", "tag": "x", "content": "new", "version": "1"}


async def _request(visitor: Visitor, method: str, path: str) -> httpx.Response:
    if method == "GET":
        return await visitor.get(path, htmx=True)  # without htmx, some only redirect
    return await visitor.post(path, FORM)


def _assert_not_found_page(response: httpx.Response, what: str) -> None:
    assert response.status_code == 404, (what, response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("text/html"), what
    page = parse(response)
    assert page.select_one(".error-page h1").get_text() == "404", what


@pytest.mark.parametrize("not_an_id", NOT_IDS)
async def test_an_id_no_memory_can_have_is_a_404_page(
    session: AsyncSession, visitor: Visitor, not_an_id: str
) -> None:
    """Every page and form that takes an id in its URL answers 404, as for an id that
    is not the visitor's, and changes nothing."""
    ann = await make_user(session, username="ann")
    mine = await make_memory(session, user=ann, key="mine")
    await visitor.log_in("ann")
    before = await _contents(session)
    for method, route in PAGE_ROUTES:
        _assert_not_found_page(
            await _request(visitor, method, route.format(id=not_an_id)), f"{method} {route}"
        )
    restore = await visitor.post("/trash/restore", {"id": not_an_id})
    _assert_not_found_page(restore, "POST /trash/restore")
    assert await _contents(session) == before
    shown = await visitor.get(f"/memories/{mine.id}")
    assert shown.status_code == 200, "a real id still works"


async def test_someone_elses_id_is_the_same_404(session: AsyncSession, visitor: Visitor) -> None:
    """The control: an id that exists but is not yours gives the page the bad ids give."""
    await make_user(session, username="ann")
    theirs = await make_memory(session, user=await make_user(session, username="bob"))
    await visitor.log_in("ann")
    for method, route in PAGE_ROUTES:
        _assert_not_found_page(
            await _request(visitor, method, route.format(id=theirs.id)), f"{method} {route}"
        )


async def test_an_edit_parameter_that_is_no_id_opens_no_editor(
    session: AsyncSession, visitor: Visitor
) -> None:
    """`?edit=` with a number past 32 bits or a digit int() refuses shows the list as is."""
    ann = await make_user(session, username="ann")
    await make_memory(session, user=ann, key="mine")
    await visitor.log_in("ann")
    for value in ("²", "2147483648", "9" * 5000):
        response = await visitor.get(f"/memories?edit={value}")
        assert response.status_code == 200, value
        page = parse(response)
        assert page.select_one("#results .edit-link") is not None, value
        assert page.select_one("#results .memory-editor") is None, value


@pytest.mark.parametrize("version", ["²", "9" * 5000])
async def test_a_version_that_is_no_number_is_not_a_500(
    session: AsyncSession, visitor: Visitor, version: str
) -> None:
    """A form's version that int() refuses counts as no version, like any other text."""
    ann = await make_user(session, username="ann")
    memory = await make_memory(session, user=ann, key="mine")
    await visitor.log_in("ann")
    response = await visitor.post(
        f"/memories/{memory.id}/importance", {"importance": "0.9", "version": version}
    )
    assert response.status_code == 303, response.text[:300]
    await session.commit()  # a new transaction: see what the app has written since
    await session.refresh(memory)
    assert memory.importance == 0.9
