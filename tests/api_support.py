"""Agents on the JSON API, and what the database holds, for the tests/test_api_*.py modules.

Agents talk to the app through httpx's ASGI transport with a bearer token made by
services.tokens.create_token; what the database holds afterwards is read with plain SQL
on the module's engine (never through a session's identity map, which would be stale).
Its fixtures (open_client, new_agent, ann, bob, root) are shared through conftest.py's
pytest_plugins.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.factories import make_token, make_user
from tests.web_support import asgi_clients
from webapp.models import ApiToken, LongTermMemory, MemoryEvent, User

_memories = LongTermMemory.__table__  # type: ignore[attr-defined]
_events = MemoryEvent.__table__  # type: ignore[attr-defined]
_tokens = ApiToken.__table__  # type: ignore[attr-defined]

MEMORY_FIELDS = {
    "id",
    "user_id",
    "namespace",
    "key",
    "content",
    "tags",
    "importance",
    "expires_at",
    "access_count",
    "last_accessed_at",
    "is_deleted",
    "deleted_at",
    "version",
    "created_at",
    "updated_at",
}
"""Memories are JSON objects with the model's field names."""
PAGE_FIELDS = {"items", "next_cursor", "prev_cursor", "count", "count_capped"}
SCORE_PARTS = {"text", "semantic", "importance", "recency", "access"}


# --- agents and what the database holds ------------------------------------------------


@dataclass
class Agent:
    """A user, one of their API tokens, and an httpx client sending it on /api/v1."""

    user: User
    token: ApiToken
    secret: str
    client: httpx.AsyncClient

    @property
    def user_id(self) -> int:
        assert self.user.id is not None
        return self.user.id


OpenClient = Callable[..., httpx.AsyncClient]
NewAgent = Callable[..., Awaitable[Agent]]


@pytest.fixture
async def open_client(app: FastAPI, db: AsyncEngine) -> AsyncIterator[OpenClient]:
    """Opens clients on /api/v1 with the given headers; tables are emptied afterwards."""
    base_url = "http://testserver/api/v1"
    async with asgi_clients(app, address="203.0.113.9", base_url=base_url) as opener:
        yield opener


@pytest.fixture
def new_agent(session: AsyncSession, open_client: OpenClient) -> NewAgent:
    """Creates a user with an API token and a client that sends it."""

    async def make(username: str, *, is_admin: bool = False) -> Agent:
        user = await make_user(session, username=username, is_admin=is_admin)
        token, secret = await make_token(session, user=user, name=f"{username}-agent")
        client = open_client(Authorization=f"Bearer {secret}")
        return Agent(user=user, token=token, secret=secret, client=client)

    return make


@pytest.fixture
async def ann(new_agent: NewAgent) -> Agent:
    """An ordinary user's agent."""
    return await new_agent("ann")


@pytest.fixture
async def bob(new_agent: NewAgent) -> Agent:
    """Another ordinary user's agent."""
    return await new_agent("bob")


@pytest.fixture
async def root(new_agent: NewAgent) -> Agent:
    """An admin's agent."""
    return await new_agent("root", is_admin=True)


async def stored(db: AsyncEngine, memory_id: int) -> Row[Any]:
    """The memory's row as the database holds it now."""
    async with db.connect() as conn:
        result = await conn.execute(select(_memories).where(_memories.c.id == memory_id))
        return result.one()


async def stored_by_key(db: AsyncEngine, user_id: int, namespace: str, key: str) -> list[Row[Any]]:
    """Every row of user at namespace/key (zero or one)."""
    query = select(_memories).where(
        _memories.c.user_id == user_id, _memories.c.namespace == namespace, _memories.c.key == key
    )
    async with db.connect() as conn:
        return list((await conn.execute(query)).all())


async def events_of(db: AsyncEngine, memory_id: int) -> list[Row[Any]]:
    """The memory's audit trail, oldest first."""
    query = select(_events).where(_events.c.memory_id == memory_id).order_by(_events.c.id)
    async with db.connect() as conn:
        return list((await conn.execute(query)).all())


async def everything(db: AsyncEngine) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every memory and every event, to show that a refused request wrote nothing."""
    async with db.connect() as conn:
        memories = (await conn.execute(select(_memories).order_by(_memories.c.id))).all()
        events = (await conn.execute(select(_events).order_by(_events.c.id))).all()
    return [tuple(row) for row in memories], [tuple(row) for row in events]


def assert_error(response: httpx.Response, status: int | None = None) -> Any:
    """The response is a JSON error {"detail": ...} with status (any 4xx if None)."""
    if status is None:
        assert 400 <= response.status_code < 500, (response.status_code, response.text)
    else:
        assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"detail"} and body["detail"], body
    return body["detail"]


def when(value: str) -> datetime:
    """A timestamp of the API, which must carry its timezone."""
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() == timedelta(0), value
    return parsed


def memory(namespace: str = "facts", key: str = "tea", **fields: Any) -> dict[str, Any]:
    """A PUT body."""
    return {"namespace": namespace, "key": key, "content": "green tea", **fields}


def keys(response: httpx.Response) -> list[str]:
    """The keys of a page or of search results, in order."""
    assert response.status_code == 200, response.text
    return [item["key"] for item in response.json()["items"]]
