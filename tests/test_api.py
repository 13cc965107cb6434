"""The JSON API for agents (SPEC 5), over HTTP, on SQLite and on PostgreSQL.

Agents talk to the app through httpx's ASGI transport with a bearer token made by
services.tokens.create_token; what the database holds afterwards is read with plain SQL
on the module's engine (never through a session's identity map, which would be stale).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.factories import make_memories_for_filters, make_memory, make_user
from tests.web_support import Visitor, asgi_clients
from webapp.db import Database
from webapp.models import ApiToken, LongTermMemory, MemoryEvent, User
from webapp.services import tokens
from webapp.services.search import WEIGHTS
from webapp.services.tokens import create_token, revoke_token
from webapp.types import utcnow

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
"""SPEC 5: memories are JSON objects with the model's field names."""
PAGE_FIELDS = {"items", "next_cursor", "prev_cursor", "count", "count_capped"}
SCORE_PARTS = {"text", "importance", "recency", "access"}


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
def new_agent(db: AsyncEngine, session: AsyncSession, open_client: OpenClient) -> NewAgent:
    """Creates a user with an API token and a client that sends it."""

    async def make(username: str, *, is_admin: bool = False) -> Agent:
        user = await make_user(session, username=username, is_admin=is_admin)
        token, secret = await create_token(Database(db), user=user, name=f"{username}-agent")
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


# --- PUT /memories ---------------------------------------------------------------------


async def test_put_creates_with_201_then_updates_with_200(db: AsyncEngine, ann: Agent) -> None:
    """Remember is an upsert by namespace + key: 201 the first time, 200 after."""
    created = await ann.client.put(
        "/memories", json=memory(tags=["Drinks", " drinks ", "Morning"], importance=0.8)
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) == MEMORY_FIELDS
    assert (body["namespace"], body["key"], body["content"]) == ("facts", "tea", "green tea")
    assert body["tags"] == ["drinks", "morning"]
    assert (body["importance"], body["version"], body["access_count"]) == (0.8, 1, 0)
    assert body["user_id"] == ann.user_id and body["is_deleted"] is False
    assert body["expires_at"] is None and body["last_accessed_at"] is None
    assert when(body["created_at"]) <= when(body["updated_at"]) <= utcnow()

    updated = await ann.client.put("/memories", json=memory(content="black tea"))
    assert updated.status_code == 200, updated.text
    again = updated.json()
    assert again["id"] == body["id"]
    assert (again["content"], again["version"]) == ("black tea", 2)
    row = await stored(db, body["id"])
    assert (row.content, row.version, row.user_id) == ("black tea", 2, ann.user_id)
    assert len(await stored_by_key(db, ann.user_id, "facts", "tea")) == 1


async def test_put_of_the_same_memory_again_changes_nothing(db: AsyncEngine, ann: Agent) -> None:
    """An agent retrying a write gets 200 and leaves version and the audit trail alone."""
    created = (await ann.client.put("/memories", json=memory(tags=["a"]))).json()
    before = await everything(db)
    again = await ann.client.put("/memories", json=memory(tags=["A "]))
    assert again.status_code == 200, again.text
    assert again.json()["version"] == created["version"] == 1
    assert await everything(db) == before


async def test_keys_are_nfc_normalised(db: AsyncEngine, ann: Agent) -> None:
    """`café` typed as e + combining accent is the same key as the composed one."""
    decomposed, composed = "cafe\u0301", "caf\u00e9"
    created = await ann.client.put("/memories", json=memory(key=decomposed))
    assert created.status_code == 201 and created.json()["key"] == composed
    assert (await ann.client.put("/memories", json=memory(key=composed))).status_code == 200
    for key in (composed, decomposed):
        recalled = await ann.client.get("/recall", params={"namespace": "facts", "key": key})
        assert recalled.status_code == 200 and recalled.json()["id"] == created.json()["id"]
    assert len(await stored_by_key(db, ann.user_id, "facts", composed)) == 1


async def test_put_revives_a_soft_deleted_key(db: AsyncEngine, ann: Agent) -> None:
    """Writing a key that is in the trash brings it back (200, same id, a restore event)."""
    first = (await ann.client.put("/memories", json=memory())).json()
    assert (await ann.client.delete(f"/memories/{first['id']}")).status_code == 200
    revived = await ann.client.put("/memories", json=memory(content="oolong"))
    assert revived.status_code == 200, revived.text
    body = revived.json()
    assert body["id"] == first["id"]
    assert (body["is_deleted"], body["deleted_at"], body["content"]) == (False, None, "oolong")
    row = await stored(db, first["id"])
    assert (row.is_deleted, row.deleted_at, row.content) == (False, None, "oolong")
    assert [event.action for event in await events_of(db, first["id"])] == [
        "create",
        "delete",
        "restore",
    ]
    assert (await ann.client.get(f"/memories/{first['id']}")).status_code == 200


async def test_put_ttl_seconds_sets_the_expiry_from_now(db: AsyncEngine, ann: Agent) -> None:
    """ttl_seconds is turned into expires_at = now + ttl, and stored so."""
    before = utcnow()
    response = await ann.client.put("/memories", json=memory(ttl_seconds=3600))
    after = utcnow()
    assert response.status_code == 201, response.text
    expires_at = when(response.json()["expires_at"])
    assert before + timedelta(seconds=3600) <= expires_at <= after + timedelta(seconds=3600)
    assert (await stored(db, response.json()["id"])).expires_at == expires_at
    assert "ttl_seconds" not in response.json()


async def test_put_with_both_expires_at_and_ttl_is_422(db: AsyncEngine, ann: Agent) -> None:
    """An expiry given twice is ambiguous: refused, nothing written."""
    expires_at = (utcnow() + timedelta(days=1)).isoformat()
    response = await ann.client.put("/memories", json=memory(expires_at=expires_at, ttl_seconds=60))
    assert_error(response, 422)
    assert await everything(db) == ([], [])


async def test_put_with_a_stale_version_is_409_and_writes_nothing(
    db: AsyncEngine, ann: Agent
) -> None:
    """Optimistic locking: a write based on a version that moved on is refused."""
    created = (await ann.client.put("/memories", json=memory())).json()
    current = await ann.client.put("/memories", json=memory(content="v2", version=1))
    assert current.status_code == 200 and current.json()["version"] == 2, current.text
    before = await everything(db)
    stale = await ann.client.put("/memories", json=memory(content="lost", version=1))
    assert_error(stale, 409)
    assert await everything(db) == before
    assert (await stored(db, created["id"])).content == "v2"
    absent = await ann.client.put("/memories", json=memory(key="new", version=3))
    assert_error(absent, 409)
    assert await everything(db) == before


SERVER_OWNED = {
    "id": 999_999,
    "user_id": 1,
    "user": "bob",
    "access_count": 50,
    "last_accessed_at": "2024-01-01T00:00:00Z",
    "is_deleted": True,
    "deleted_at": "2024-01-01T00:00:00Z",
    "created_at": "2020-01-01T00:00:00Z",
    "updated_at": "2020-01-01T00:00:00Z",
}


async def test_put_refuses_server_owned_fields(db: AsyncEngine, ann: Agent, bob: Agent) -> None:
    """An agent cannot set ids, owners, access counts or timestamps: 4xx, nothing written."""
    await ann.client.put("/memories", json=memory())
    before = await everything(db)
    for name, value in SERVER_OWNED.items():
        for key in ("tea", "new"):  # the update path and the create path
            body = memory(key=key, content="changed", **{name: value})
            if name == "user_id":
                body[name] = bob.user_id
            response = await ann.client.put("/memories", json=body)
            assert_error(response)
            assert await everything(db) == before, f"{name} on {key}"


# --- GET /memories -----------------------------------------------------------------------


async def test_list_shape_and_memory_fields(ann: Agent) -> None:
    """A page is {items, next_cursor, prev_cursor, count, count_capped} of model fields."""
    for key in ("a", "b", "c"):
        assert (await ann.client.put("/memories", json=memory(key=key))).status_code == 201
    response = await ann.client.get("/memories")
    assert response.status_code == 200, response.text
    page = response.json()
    assert set(page) == PAGE_FIELDS
    assert (page["count"], page["count_capped"]) == (3, False)
    assert (page["next_cursor"], page["prev_cursor"]) == (None, None)
    assert [item["key"] for item in page["items"]] == ["c", "b", "a"], "newest write first"
    for item in page["items"]:
        assert set(item) == MEMORY_FIELDS


async def test_list_limit_defaults_to_50_and_stops_at_200(
    session: AsyncSession, ann: Agent
) -> None:
    """50 a page unless asked, at most 200; following next_cursor visits each row once."""
    now = utcnow()
    session.add_all(
        LongTermMemory(
            user_id=ann.user_id,
            namespace="bulk",
            key=f"k{number:02}",
            content="x",
            created_at=now,
            updated_at=now - timedelta(seconds=number),
        )
        for number in range(60)
    )
    await session.commit()
    first = (await ann.client.get("/memories")).json()
    assert len(first["items"]) == 50 and first["count"] == 60
    assert first["next_cursor"] is not None
    second = (await ann.client.get("/memories", params={"cursor": first["next_cursor"]})).json()
    assert len(second["items"]) == 10 and second["next_cursor"] is None
    seen = [item["key"] for item in first["items"] + second["items"]]
    assert seen == [f"k{number:02}" for number in range(60)]
    assert len((await ann.client.get("/memories", params={"limit": 200})).json()["items"]) == 60
    assert len((await ann.client.get("/memories", params={"limit": 7})).json()["items"]) == 7
    for limit in (0, 201, -1):
        assert_error(await ann.client.get("/memories", params={"limit": limit}))


async def test_list_keyset_pages_forward_and_back(session: AsyncSession, ann: Agent) -> None:
    """next_cursor and prev_cursor walk the same pages both ways, for any sort."""
    for number in range(7):
        await make_memory(session, user=ann.user, key=f"m{number}", importance=number / 10)
    params: dict[str, Any] = {"sort": "-importance", "limit": 3}
    one = (await ann.client.get("/memories", params=params)).json()
    two = (
        await ann.client.get("/memories", params={**params, "cursor": one["next_cursor"]})
    ).json()
    three = (
        await ann.client.get("/memories", params={**params, "cursor": two["next_cursor"]})
    ).json()
    pages = [[item["key"] for item in page["items"]] for page in (one, two, three)]
    assert pages == [["m6", "m5", "m4"], ["m3", "m2", "m1"], ["m0"]]
    assert one["prev_cursor"] is None and three["next_cursor"] is None
    assert {page["count"] for page in (one, two, three)} == {7}
    back = await ann.client.get("/memories", params={**params, "cursor": three["prev_cursor"]})
    assert keys(back) == ["m3", "m2", "m1"]
    start = await ann.client.get("/memories", params={**params, "cursor": two["prev_cursor"]})
    assert keys(start) == ["m6", "m5", "m4"] and start.json()["prev_cursor"] is None


@pytest.fixture
async def filterable(session: AsyncSession, ann: Agent, bob: Agent) -> None:
    """Ann's memories in every state, and one of Bob's that no filter of Ann's shows."""
    now = utcnow()
    user = ann.user
    await make_memories_for_filters(session, user)
    await make_memory(
        session,
        user=user,
        key="dusty",
        namespace="work",
        content="read long ago",
        importance=0.6,
        access_count=1,
        last_accessed_at=now - timedelta(days=200),
    )
    await make_memory(session, user=bob.user, key="bobs", namespace="food", tags=["likes"])


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["cake", "dusty", "read", "tea"]),
        ({"user": "ann"}, ["cake", "dusty", "read", "tea"]),
        ({"namespace": "food"}, ["cake"]),
        ({"namespace": "food/drinks"}, ["tea"]),
        ({"namespace": "food/"}, ["cake", "tea"]),
        ({"tag": "likes"}, ["cake", "tea"]),
        ({"tag": ["likes", "sweet"]}, ["cake", "tea"]),
        ({"tag": ["likes", "sweet"], "tags_mode": "all"}, ["cake"]),
        ({"q": "tea"}, ["tea"]),
        ({"q": "choc*"}, ["cake"]),
        ({"min_importance": 0.8}, ["tea"]),
        ({"max_importance": 0.2}, ["cake"]),
        ({"min_importance": 0.4, "max_importance": 0.6}, ["dusty", "read"]),
        ({"state": "expired"}, ["old"]),
        ({"state": "deleted"}, ["gone"]),
        ({"state": "all"}, ["cake", "dusty", "gone", "old", "read", "tea"]),
        ({"expiring_within": 7}, ["cake"]),
        ({"accessed": "never"}, ["cake", "tea"]),
        ({"accessed": "stale", "namespace": "work"}, ["dusty"]),
        ({"accessed": "stale", "stale_days": 365, "namespace": "work"}, []),
    ],
    ids=lambda value: urlencode(value, doseq=True) if isinstance(value, dict) else None,
)
async def test_list_filters(
    filterable: None, ann: Agent, params: dict[str, Any], expected: list[str]
) -> None:
    """Each SPEC 3 filter narrows the list to the memories it names (and only Ann's)."""
    response = await ann.client.get("/memories", params=params)
    assert sorted(keys(response)) == expected
    assert response.json()["count"] == len(expected)


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("importance", ["cake", "read", "dusty", "tea"]),
        ("-importance", ["tea", "dusty", "read", "cake"]),
        ("created_at", ["tea", "cake", "read", "dusty"]),
        ("-created_at", ["dusty", "read", "cake", "tea"]),
        ("-access_count", ["read", "dusty"]),
        ("-last_accessed_at", ["read", "dusty"]),
    ],
)
async def test_list_sorts(filterable: None, ann: Agent, sort: str, expected: list[str]) -> None:
    """The sort parameter orders the page (ties on the sort key are not asserted)."""
    listed = keys(await ann.client.get("/memories", params={"sort": sort}))
    assert listed[: len(expected)] == expected


@pytest.mark.parametrize(
    "params",
    [
        {"colour": "blue"},
        {"tags": "likes"},
        {"sort": "colour"},
        {"sort": "-content"},
        {"cursor": "forged"},
    ],
    ids=["unknown-parameter", "misspelt-filter", "unknown-sort", "unsortable", "bad-cursor"],
)
async def test_list_refuses_unknown_names_and_forged_cursors_with_400(
    ann: Agent, params: dict[str, str]
) -> None:
    """A typo in a filter or sort must not silently list everything: 400 with a detail."""
    assert_error(await ann.client.get("/memories", params=params), 400)


async def test_list_refuses_a_tampered_or_foreign_cursor(session: AsyncSession, ann: Agent) -> None:
    """Cursors are signed: an altered one, or one made for another sort, is a 400."""
    for number in range(3):
        await make_memory(session, user=ann.user, key=f"m{number}")
    cursor = (await ann.client.get("/memories", params={"limit": 1})).json()["next_cursor"]
    assert cursor is not None
    flipped = cursor[:-2] + ("A" if cursor[-2] != "A" else "B") + cursor[-1]
    for params in (
        {"limit": 1, "cursor": flipped},
        {"limit": 1, "cursor": cursor + "x"},
        {"limit": 1, "cursor": cursor, "sort": "importance"},
    ):
        assert_error(await ann.client.get("/memories", params=params), 400)
    assert keys(await ann.client.get("/memories", params={"limit": 1, "cursor": cursor})) == ["m1"]


async def test_listing_and_getting_are_not_accesses(db: AsyncEngine, ann: Agent) -> None:
    """Only recall, search and context count; browsing and reading by id do not."""
    created = (await ann.client.put("/memories", json=memory())).json()
    assert (await ann.client.get("/memories")).status_code == 200
    assert (await ann.client.get(f"/memories/{created['id']}")).status_code == 200
    row = await stored(db, created["id"])
    assert (row.access_count, row.last_accessed_at) == (0, None)


# --- GET, PATCH, DELETE /memories/{id} and restore -------------------------------------


async def test_get_by_id_hides_deleted_unless_asked(ann: Agent) -> None:
    """A soft-deleted memory is 404 by id, unless include_deleted=true; unknown ids are 404."""
    created = (await ann.client.put("/memories", json=memory())).json()
    got = await ann.client.get(f"/memories/{created['id']}")
    assert got.status_code == 200 and got.json() == created
    await ann.client.delete(f"/memories/{created['id']}")
    assert_error(await ann.client.get(f"/memories/{created['id']}"), 404)
    shown = await ann.client.get(f"/memories/{created['id']}", params={"include_deleted": "true"})
    assert shown.status_code == 200, shown.text
    assert shown.json()["is_deleted"] is True and shown.json()["deleted_at"] is not None
    assert_error(await ann.client.get("/memories/987654"), 404)


async def test_patch_changes_the_given_fields_and_bumps_version(
    db: AsyncEngine, ann: Agent
) -> None:
    """PATCH edits content, tags, importance, expiry; the others stay as they were."""
    created = (await ann.client.put("/memories", json=memory(tags=["a"], importance=0.3))).json()
    expires_at = (utcnow() + timedelta(days=2)).replace(microsecond=0)
    response = await ann.client.patch(
        f"/memories/{created['id']}",
        json={
            "version": 1,
            "tags": ["Work ", "work", "Home"],
            "expires_at": expires_at.isoformat(),
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["version"], body["tags"], body["importance"]) == (2, ["work", "home"], 0.3)
    assert body["content"] == "green tea" and when(body["expires_at"]) == expires_at
    row = await stored(db, created["id"])
    assert (row.version, row.tags, row.expires_at) == (2, ["work", "home"], expires_at)
    again = await ann.client.patch(
        f"/memories/{created['id']}", json={"version": 2, "content": "matcha", "importance": 1}
    )
    assert again.status_code == 200, again.text
    assert (again.json()["content"], again.json()["importance"]) == ("matcha", 1.0)


async def test_patch_needs_a_current_version(db: AsyncEngine, ann: Agent) -> None:
    """Without version, 422; with a stale one, 409; in both cases nothing changes."""
    created = (await ann.client.put("/memories", json=memory())).json()
    url = f"/memories/{created['id']}"
    assert (await ann.client.patch(url, json={"version": 1, "content": "v2"})).status_code == 200
    before = await everything(db)
    assert_error(await ann.client.patch(url, json={"content": "no version"}), 422)
    detail = assert_error(await ann.client.patch(url, json={"version": 1, "content": "stale"}), 409)
    assert "version" in str(detail)
    assert await everything(db) == before
    assert (await stored(db, created["id"])).content == "v2"


async def test_patch_expires_at_null_clears_the_expiry(db: AsyncEngine, ann: Agent) -> None:
    """`expires_at: null` makes a memory permanent again (absent leaves it alone)."""
    created = (await ann.client.put("/memories", json=memory(ttl_seconds=600))).json()
    url = f"/memories/{created['id']}"
    kept = await ann.client.patch(url, json={"version": 1, "importance": 0.9})
    assert kept.status_code == 200 and kept.json()["expires_at"] == created["expires_at"]
    cleared = await ann.client.patch(url, json={"version": 2, "expires_at": None})
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["expires_at"] is None
    assert (await stored(db, created["id"])).expires_at is None


async def test_patch_of_a_deleted_memory_is_404(db: AsyncEngine, ann: Agent) -> None:
    """A memory in the trash cannot be edited until it is restored."""
    created = (await ann.client.put("/memories", json=memory())).json()
    deleted = (await ann.client.delete(f"/memories/{created['id']}")).json()
    before = await everything(db)
    response = await ann.client.patch(
        f"/memories/{created['id']}", json={"version": deleted["version"], "content": "x"}
    )
    assert_error(response, 404)
    assert await everything(db) == before


async def test_delete_is_soft_and_a_second_delete_is_404(db: AsyncEngine, ann: Agent) -> None:
    """DELETE keeps the row (is_deleted, deleted_at) for restore; deleting again is 404."""
    created = (await ann.client.put("/memories", json=memory())).json()
    response = await ann.client.delete(f"/memories/{created['id']}")
    assert response.status_code == 200, response.text
    assert response.json()["is_deleted"] is True
    row = await stored(db, created["id"])
    assert row.is_deleted is True and row.deleted_at is not None
    assert_error(await ann.client.delete(f"/memories/{created['id']}"), 404)
    assert_error(await ann.client.delete("/memories/987654"), 404)
    assert keys(await ann.client.get("/memories")) == []


async def test_restore_undoes_a_delete(db: AsyncEngine, ann: Agent) -> None:
    """restore brings a deleted memory back; restoring one that is not deleted is 404."""
    created = (await ann.client.put("/memories", json=memory())).json()
    url = f"/memories/{created['id']}"
    assert_error(await ann.client.post(url + "/restore"), 404)
    await ann.client.delete(url)
    restored = await ann.client.post(url + "/restore")
    assert restored.status_code == 200, restored.text
    assert (restored.json()["is_deleted"], restored.json()["deleted_at"]) == (False, None)
    row = await stored(db, created["id"])
    assert (row.is_deleted, row.deleted_at) == (False, None)
    assert (await ann.client.get(url)).status_code == 200
    assert_error(await ann.client.post("/memories/987654/restore"), 404)


# --- recall ------------------------------------------------------------------------------


async def test_recall_counts_an_access(db: AsyncEngine, ann: Agent) -> None:
    """Each recall adds one to access_count and sets last_accessed_at, in the database."""
    created = (await ann.client.put("/memories", json=memory())).json()
    before = utcnow()
    first = await ann.client.get("/recall", params={"namespace": "facts", "key": "tea"})
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["id"], body["content"], body["access_count"]) == (created["id"], "green tea", 1)
    assert before <= when(body["last_accessed_at"]) <= utcnow()
    second = await ann.client.get("/recall", params={"namespace": "facts", "key": "tea"})
    assert second.json()["access_count"] == 2
    row = await stored(db, created["id"])
    assert row.access_count == 2 and row.last_accessed_at is not None
    assert row.version == 1, "an access is not an edit"
    assert [event.action for event in await events_of(db, created["id"])] == ["create"]


async def test_recall_is_404_for_absent_deleted_and_expired(
    db: AsyncEngine, session: AsyncSession, ann: Agent
) -> None:
    """Recall returns active memories only, and counts nothing for the others."""
    now = utcnow()
    await make_memory(session, user=ann.user, key="gone", is_deleted=True, deleted_at=now)
    await make_memory(session, user=ann.user, key="old", expires_at=now - timedelta(seconds=1))
    before = await everything(db)
    for key in ("gone", "old", "never-written"):
        response = await ann.client.get("/recall", params={"namespace": "facts", "key": key})
        assert_error(response, 404)
    assert_error(await ann.client.get("/recall", params={"namespace": "other", "key": "gone"}), 404)
    assert await everything(db) == before


async def test_recall_needs_namespace_and_key(ann: Agent) -> None:
    """A recall missing a parameter, or with an invalid namespace, is refused as bad input."""
    assert_error(await ann.client.get("/recall", params={"namespace": "facts"}))
    assert_error(await ann.client.get("/recall", params={"key": "tea"}))
    assert_error(await ann.client.get("/recall", params={"namespace": "a//b", "key": "tea"}))


# --- search ------------------------------------------------------------------------------


@pytest.fixture
async def teas(session: AsyncSession, ann: Agent, bob: Agent) -> dict[str, LongTermMemory]:
    """Ann's memories about tea in every state, a cake, and one of Bob's about tea."""
    now = utcnow()
    user = ann.user
    return {
        "best": await make_memory(
            session,
            user=user,
            key="tea",
            namespace="food/drinks",
            tags=["drinks"],
            content="Ann drinks green tea, tea every morning",
            importance=1.0,
        ),
        "also": await make_memory(
            session,
            user=user,
            key="afternoon",
            namespace="food",
            content="In the afternoon she sometimes has coffee instead of tea, with biscuits "
            "from the bakery on the corner, never sugar",
            importance=0.0,
        ),
        "cake": await make_memory(
            session, user=user, key="cake", namespace="food", content="chocolate cake"
        ),
        "deleted": await make_memory(
            session, user=user, key="gone", content="tea", is_deleted=True, deleted_at=now
        ),
        "expired": await make_memory(
            session, user=user, key="old", content="tea", expires_at=now - timedelta(minutes=1)
        ),
        "bobs": await make_memory(session, user=bob.user, key="tea", content="tea for bob"),
    }


async def test_search_ranks_and_explains_scores(
    db: AsyncEngine, ann: Agent, teas: dict[str, LongTermMemory]
) -> None:
    """Results are the active matches, best first, each with score and its components."""
    response = await ann.client.post("/search", json={"query": "tea"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"items"}
    items = body["items"]
    assert [item["id"] for item in items] == [teas["best"].id, teas["also"].id]
    scores = [item["score"] for item in items]
    assert scores == sorted(scores, reverse=True) and scores[0] > scores[1]
    for item in items:
        assert set(item) == MEMORY_FIELDS | {"score", "score_components"}
        parts = item["score_components"]
        assert set(parts) == SCORE_PARTS
        assert all(0.0 <= value <= 1.0 for value in parts.values()), parts
        assert parts["importance"] == item["importance"]
        weighted = sum(WEIGHTS[name] * parts[name] for name in SCORE_PARTS)
        assert math.isclose(item["score"], weighted, abs_tol=1e-5), (item["score"], weighted)
    assert items[0]["score_components"]["text"] == 1.0, "the best text match scores 1"


async def test_search_counts_access_for_what_it_returns(
    db: AsyncEngine, ann: Agent, teas: dict[str, LongTermMemory]
) -> None:
    """Returned memories count as accessed; the others (and other states) do not."""
    before = utcnow()
    items = (await ann.client.post("/search", json={"query": "tea"})).json()["items"]
    assert [item["access_count"] for item in items] == [1, 1]
    counts = {name: (await stored(db, m.id)).access_count for name, m in teas.items()}  # type: ignore[arg-type]
    assert counts == {"best": 1, "also": 1, "cake": 0, "deleted": 0, "expired": 0, "bobs": 0}
    accessed = (await stored(db, teas["best"].id)).last_accessed_at  # type: ignore[arg-type]
    assert accessed is not None and accessed >= before


@pytest.mark.parametrize(
    ("request_body", "expected"),
    [
        ({"query": "tea", "namespace": "food/drinks"}, ["best"]),
        ({"query": "tea", "namespace": "food"}, ["also"]),
        ({"query": "tea", "namespace": "food/"}, ["best", "also"]),
        ({"query": "tea", "namespace": "food/drinks/"}, ["best"]),
        ({"query": "tea", "tags": ["drinks"]}, ["best"]),
        ({"query": "tea", "limit": 1}, ["best"]),
        ({"query": "biscuits"}, ["also"]),
        ({"query": "nothing-like-this"}, []),
    ],
)
async def test_search_narrows_by_namespace_tags_and_limit(
    ann: Agent, teas: dict[str, LongTermMemory], request_body: dict[str, Any], expected: list[str]
) -> None:
    """namespace (exact, or a prefix ending in /), tags and limit narrow the results."""
    response = await ann.client.post("/search", json=request_body)
    assert [item["id"] for item in response.json()["items"]] == [teas[n].id for n in expected]


async def test_search_refuses_bad_requests(ann: Agent) -> None:
    """An empty query, an unknown field or a limit out of range is a 4xx."""
    for body in ({"query": ""}, {"query": "tea", "colour": "x"}, {"query": "tea", "limit": 0}):
        assert_error(await ann.client.post("/search", json=body))


# --- context -----------------------------------------------------------------------------


async def test_context_is_a_ranked_block_of_the_memories_it_names(
    db: AsyncEngine, ann: Agent, teas: dict[str, LongTermMemory]
) -> None:
    """The block lists the matches most relevant first, each as [id], within max_chars."""
    response = await ann.client.post("/context", json={"query": "tea", "max_chars": 2000})
    assert response.status_code == 200, response.text
    block = response.json()
    assert set(block) == {"context", "ids", "chars", "truncated"}
    assert block["ids"] == [teas["best"].id, teas["also"].id]
    text = block["context"]
    assert block["chars"] == len(text) <= 2000 and block["truncated"] is False
    positions = [text.index(f"[{memory_id}]") for memory_id in block["ids"]]
    assert positions == sorted(positions)
    assert "Ann drinks green tea" in text and "biscuits" in text
    for absent in ("cake", "deleted", "expired", "bobs"):
        assert f"[{teas[absent].id}]" not in text, absent
    assert "tea for bob" not in text and "chocolate" not in text


async def test_context_keeps_to_the_budget_and_counts_only_what_it_includes(
    db: AsyncEngine, ann: Agent, teas: dict[str, LongTermMemory]
) -> None:
    """With room for only the best memory, only it is in the block and counted as read."""
    full = (await ann.client.post("/context", json={"query": "tea", "max_chars": 2000})).json()
    first_line = full["context"].split("\n")[0]
    assert f"[{teas['best'].id}]" in first_line
    budget = len(first_line) + 10
    response = await ann.client.post("/context", json={"query": "tea", "max_chars": budget})
    block = response.json()
    assert block["ids"] == [teas["best"].id]
    assert block["context"] == first_line and block["chars"] <= budget
    assert block["truncated"] is True
    counts = {name: (await stored(db, m.id)).access_count for name, m in teas.items()}  # type: ignore[arg-type]
    assert counts == {"best": 2, "also": 1, "cake": 0, "deleted": 0, "expired": 0, "bobs": 0}


async def test_context_never_exceeds_the_budget(
    ann: Agent, teas: dict[str, LongTermMemory]
) -> None:
    """Whatever the budget, the block fits it, lists the best first, and every id listed
    appears in it; `truncated` says whether anything was left out or cut."""
    full = (await ann.client.post("/context", json={"query": "tea", "max_chars": 5000})).json()
    assert full["ids"] == [teas["best"].id, teas["also"].id] and not full["truncated"]
    size = full["chars"]
    for budget in (40, 80, 120, size - 1, size):
        response = await ann.client.post("/context", json={"query": "tea", "max_chars": budget})
        assert response.status_code == 200, response.text
        block = response.json()
        assert block["chars"] == len(block["context"]) <= budget, budget
        assert block["truncated"] is (budget < size), budget
        assert block["ids"] == full["ids"][: len(block["ids"])] and block["ids"], budget
        for memory_id in block["ids"]:
            assert f"[{memory_id}]" in block["context"], (budget, block)
    assert block == full


@pytest.mark.parametrize("budget", [1, 3])
async def test_context_tiny_budget_never_lists_an_id_it_does_not_show(
    db: AsyncEngine, ann: Agent, teas: dict[str, LongTermMemory], budget: int
) -> None:
    """`ids` are the memories in the block: one whose [id] does not fit is not listed
    (nor counted as accessed)."""
    block = (await ann.client.post("/context", json={"query": "tea", "max_chars": budget})).json()
    assert block["chars"] == len(block["context"]) <= budget
    for memory_id in block["ids"]:
        assert f"[{memory_id}]" in block["context"], block
    if not block["ids"]:
        assert (await stored(db, teas["best"].id)).access_count == 0  # type: ignore[arg-type]


async def test_context_refuses_bad_requests(ann: Agent) -> None:
    """max_chars is required and positive; unknown fields are refused."""
    for body in (
        {"query": "tea"},
        {"query": "tea", "max_chars": 0},
        {"query": "", "max_chars": 100},
        {"query": "tea", "max_chars": 100, "limit": 3},
    ):
        assert_error(await ann.client.post("/context", json=body))


# --- namespaces --------------------------------------------------------------------------


async def test_namespaces_count_each_state(
    session: AsyncSession, ann: Agent, bob: Agent, root: Agent
) -> None:
    """Each of the user's namespaces with active, expired and deleted counts, by name."""
    now = utcnow()
    for key in ("a", "b"):
        await make_memory(session, user=ann.user, namespace="facts", key=key)
    await make_memory(session, user=ann.user, namespace="facts", key="c", expires_at=now)
    await make_memory(
        session, user=ann.user, namespace="facts", key="d", is_deleted=True, deleted_at=now
    )
    await make_memory(
        session,
        user=ann.user,
        namespace="facts",
        key="e",
        is_deleted=True,
        deleted_at=now,
        expires_at=now - timedelta(days=1),
    )
    await make_memory(session, user=ann.user, namespace="projects/apollo", key="a")
    await make_memory(session, user=bob.user, namespace="bob-only", key="a")
    expected = [
        {"namespace": "facts", "active": 2, "expired": 1, "deleted": 2},
        {"namespace": "projects/apollo", "active": 1, "expired": 0, "deleted": 0},
    ]
    response = await ann.client.get("/namespaces")
    assert response.status_code == 200, response.text
    assert response.json() == expected
    assert (await root.client.get("/namespaces", params={"user": "ann"})).json() == expected
    assert (await root.client.get("/namespaces")).json() == [], "an admin acts as itself"


# --- authentication ----------------------------------------------------------------------

ENDPOINTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("PUT", "/memories", memory()),
    ("GET", "/memories", None),
    ("GET", "/memories/1", None),
    ("PATCH", "/memories/1", {"version": 1, "content": "x"}),
    ("DELETE", "/memories/1", None),
    ("POST", "/memories/1/restore", None),
    ("GET", "/recall?namespace=facts&key=tea", None),
    ("POST", "/search", {"query": "tea"}),
    ("POST", "/context", {"query": "tea", "max_chars": 100}),
    ("GET", "/namespaces", None),
]


def assert_unauthorized(response: httpx.Response) -> None:
    """401 as JSON, with the challenge that says a bearer token is wanted."""
    assert_error(response, 401)
    assert response.headers.get("www-authenticate", "").lower().startswith("bearer")


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
async def test_every_endpoint_needs_a_token(
    db: AsyncEngine,
    open_client: OpenClient,
    session: AsyncSession,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    """No token: 401 with WWW-Authenticate: Bearer, and nothing is read or written."""
    ann = await make_user(session, username="ann")
    existing = await make_memory(session, user=ann, key="tea")
    path = path.replace("/1", f"/{existing.id}")
    before = await everything(db)
    response = await open_client().request(method, path, json=body)
    assert_unauthorized(response)
    assert "green tea" not in response.text
    assert await everything(db) == before


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer",
        "Bearer ",
        "Basic YW5uOmNvcnJlY3QgaG9yc2U=",
        "Token {secret}",
        "{secret}",
        "Bearer mat_not-a-real-token",
        "Bearer {secret}x",
    ],
    ids=["no-secret", "blank-secret", "basic", "other-scheme", "no-scheme", "unknown", "altered"],
)
async def test_malformed_or_unknown_tokens_are_401(
    db: AsyncEngine, open_client: OpenClient, ann: Agent, authorization: str
) -> None:
    """Anything but `Bearer <a live token>` is a 401, and writes nothing."""
    client = open_client(Authorization=authorization.format(secret=ann.secret))
    assert_unauthorized(await client.get("/memories"))
    assert_unauthorized(await client.put("/memories", json=memory()))
    assert await everything(db) == ([], [])


async def test_the_scheme_name_is_case_insensitive(open_client: OpenClient, ann: Agent) -> None:
    """RFC 7235: `bearer` is as good as `Bearer` (a positive control for the 401 tests)."""
    client = open_client(Authorization=f"bearer {ann.secret}")
    assert (await client.get("/memories")).status_code == 200


async def test_a_revoked_token_is_401(db: AsyncEngine, session: AsyncSession, ann: Agent) -> None:
    """Revoking a token stops it at once; the user's other tokens keep working."""
    assert (await ann.client.get("/memories")).status_code == 200
    other, other_secret = await create_token(Database(db), user=ann.user, name="second")
    assert ann.token.id is not None
    await revoke_token(Database(db), token_id=ann.token.id)
    assert_unauthorized(await ann.client.get("/memories"))
    assert_unauthorized(await ann.client.put("/memories", json=memory()))
    assert await everything(db) == ([], [])
    still = await ann.client.get("/memories", headers={"Authorization": f"Bearer {other_secret}"})
    assert still.status_code == 200


async def test_an_inactive_users_token_is_401(
    db: AsyncEngine, session: AsyncSession, ann: Agent
) -> None:
    """Deactivating a user stops their agents too."""
    await session.execute(update(User).where(User.id == ann.user_id).values(is_active=False))  # type: ignore[arg-type]
    await session.commit()
    assert_unauthorized(await ann.client.get("/memories"))
    assert_unauthorized(await ann.client.put("/memories", json=memory()))
    assert await everything(db) == ([], [])


async def test_a_session_cookie_never_authenticates_the_api(
    db: AsyncEngine, session: AsyncSession, open_visitor: Callable[[], Visitor]
) -> None:
    """A logged-in browser's cookie (even with its CSRF token) is not an API credential."""
    ann = await make_user(session, username="ann")
    await make_memory(session, user=ann, key="tea")
    visitor = open_visitor()
    assert (await visitor.log_in("ann")).status_code == 303
    assert visitor.client.cookies, "the visitor is logged in"
    before = await everything(db)
    headers = {"X-CSRF-Token": visitor.csrf_token, "accept": "application/json"}
    listing = await visitor.client.get("/api/v1/memories", headers=headers)
    assert_unauthorized(listing)
    assert "green tea" not in listing.text
    assert_unauthorized(
        await visitor.client.put("/api/v1/memories", json=memory(), headers=headers)
    )
    assert await everything(db) == before


async def test_token_last_used_at_is_written_at_most_once_a_minute(
    db: AsyncEngine, ann: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token shows when it was last used, without a write on every request."""

    async def last_used() -> datetime | None:
        async with db.connect() as conn:
            query = select(_tokens.c.last_used_at).where(_tokens.c.id == ann.token.id)
            value: datetime | None = (await conn.execute(query)).scalar_one()
            return value

    assert await last_used() is None
    before = utcnow()
    assert (await ann.client.get("/memories")).status_code == 200
    first = await last_used()
    assert first is not None and before <= first <= utcnow()
    assert (await ann.client.get("/namespaces")).status_code == 200
    assert await last_used() == first, "not rewritten within a minute"

    later = utcnow() + timedelta(minutes=1, seconds=5)
    monkeypatch.setattr(tokens, "utcnow", lambda: later)
    assert (await ann.client.get("/memories")).status_code == 200
    assert await last_used() == later, "written again once a minute has passed"


# --- user isolation and acting for another user ------------------------------------------


async def test_another_users_memory_is_404_and_invisible(
    db: AsyncEngine, session: AsyncSession, ann: Agent, bob: Agent
) -> None:
    """A token sees only its user's memories: Bob's are absent to Ann everywhere."""
    theirs = await make_memory(
        session, user=bob.user, namespace="secrets", key="tea", content="bob's tea"
    )
    trashed = await make_memory(
        session, user=bob.user, key="old", content="bob's tea", is_deleted=True, deleted_at=utcnow()
    )
    before = await everything(db)
    url = f"/memories/{theirs.id}"
    assert_error(await ann.client.get(url), 404)
    assert_error(await ann.client.get(url, params={"include_deleted": "true"}), 404)
    assert_error(await ann.client.get(f"/memories/{trashed.id}?include_deleted=true"), 404)
    assert_error(await ann.client.patch(url, json={"version": 1, "content": "mine"}), 404)
    assert_error(await ann.client.delete(url), 404)
    assert_error(await ann.client.post(f"/memories/{trashed.id}/restore"), 404)
    recall = await ann.client.get("/recall", params={"namespace": "secrets", "key": "tea"})
    assert_error(recall, 404)
    assert keys(await ann.client.get("/memories", params={"state": "all"})) == []
    assert keys(await ann.client.get("/memories", params={"namespace": "secrets"})) == []
    assert (await ann.client.post("/search", json={"query": "tea"})).json()["items"] == []
    context = (await ann.client.post("/context", json={"query": "tea", "max_chars": 500})).json()
    assert context["ids"] == [] and "bob" not in context["context"]
    assert (await ann.client.get("/namespaces")).json() == []
    assert await everything(db) == before, "nothing read counted, nothing written"


async def test_same_key_for_two_users_is_two_memories(
    db: AsyncEngine, ann: Agent, bob: Agent
) -> None:
    """Keys are per user: Bob writing Ann's key creates his own memory, hers is unchanged."""
    mine = await ann.client.put("/memories", json=memory(content="ann's"))
    theirs = await bob.client.put("/memories", json=memory(content="bob's"))
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["id"] != theirs.json()["id"]
    recalled = await ann.client.get("/recall", params={"namespace": "facts", "key": "tea"})
    assert recalled.json()["content"] == "ann's"


async def test_an_admin_token_acts_for_the_named_user(
    db: AsyncEngine, session: AsyncSession, ann: Agent, root: Agent
) -> None:
    """With user=<name>, an admin's token reads and writes that user's memories."""
    as_ann = {"user": "ann"}
    put = await root.client.put("/memories", params=as_ann, json=memory(content="for ann"))
    assert put.status_code == 201, put.text
    written = put.json()
    assert written["user_id"] == ann.user_id
    assert (await stored(db, written["id"])).user_id == ann.user_id
    event = (await events_of(db, written["id"]))[0]
    assert event.actor == f"token:{root.token.id}:root" and event.user_id == ann.user_id

    assert keys(await ann.client.get("/memories")) == ["tea"], "it is Ann's memory"
    assert keys(await root.client.get("/memories", params=as_ann)) == ["tea"]
    url = f"/memories/{written['id']}"
    assert (await root.client.get(url, params=as_ann)).status_code == 200
    patched = await root.client.patch(url, params=as_ann, json={"version": 1, "importance": 0.9})
    assert patched.status_code == 200, patched.text
    recall = await root.client.get("/recall", params={**as_ann, "namespace": "facts", "key": "tea"})
    assert recall.status_code == 200 and recall.json()["id"] == written["id"]
    found = await root.client.post("/search", params=as_ann, json={"query": "ann"})
    assert [item["id"] for item in found.json()["items"]] == [written["id"]]
    block = await root.client.post(
        "/context", params=as_ann, json={"query": "ann", "max_chars": 500}
    )
    assert block.json()["ids"] == [written["id"]]
    assert (await root.client.delete(url, params=as_ann)).status_code == 200
    assert (await root.client.post(url + "/restore", params=as_ann)).status_code == 200


async def test_an_admin_token_without_user_acts_as_itself(
    db: AsyncEngine, session: AsyncSession, ann: Agent, root: Agent
) -> None:
    """Without user=, an admin's token writes its own memories and reads only those."""
    anns = await make_memory(session, user=ann.user, key="tea", content="ann's tea")
    put = await root.client.put("/memories", json=memory(content="root's tea"))
    assert put.status_code == 201, "a new memory, not Ann's"
    assert put.json()["user_id"] == root.user_id
    assert (await stored(db, anns.id)).content == "ann's tea"  # type: ignore[arg-type]
    assert [item["content"] for item in (await root.client.get("/memories")).json()["items"]] == [
        "root's tea"
    ]
    recall = await root.client.get("/recall", params={"namespace": "facts", "key": "tea"})
    assert recall.json()["content"] == "root's tea"
    found = (await root.client.post("/search", json={"query": "tea"})).json()["items"]
    assert [item["content"] for item in found] == ["root's tea"]


@pytest.mark.parametrize("name", ["bob", "nobody"])
async def test_an_ordinary_token_cannot_name_another_user(
    db: AsyncEngine, session: AsyncSession, ann: Agent, bob: Agent, name: str
) -> None:
    """user=<someone else> on an ordinary token is 404, whether or not they exist."""
    await make_memory(session, user=bob.user, key="tea")
    before = await everything(db)
    as_other = {"user": name}
    assert_error(await ann.client.put("/memories", params=as_other, json=memory()), 404)
    assert_error(await ann.client.get("/memories", params=as_other), 404)
    assert_error(
        await ann.client.get("/recall", params={**as_other, "namespace": "facts", "key": "tea"}),
        404,
    )
    assert_error(await ann.client.post("/search", params=as_other, json={"query": "tea"}), 404)
    assert_error(await ann.client.get("/namespaces", params=as_other), 404)
    assert await everything(db) == before
    own = await ann.client.get("/memories", params={"user": "ann"})
    assert own.status_code == 200, "naming oneself is fine"


async def test_an_admin_naming_an_unknown_user_is_404(db: AsyncEngine, root: Agent) -> None:
    """An admin's typo in user= writes nothing anywhere."""
    response = await root.client.put("/memories", params={"user": "nobody"}, json=memory())
    assert_error(response, 404)
    assert_error(await root.client.get("/memories", params={"user": "nobody"}), 404)
    assert await everything(db) == ([], [])


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/memories?usr=ann", memory()),
        ("GET", "/recall?namespace=facts&key=tea&usr=ann", None),
        ("POST", "/search?usr=ann", {"query": "tea"}),
        ("GET", "/namespaces?usr=ann", None),
    ],
)
async def test_unknown_query_parameters_are_400_on_every_route(
    db: AsyncEngine,
    ann: Agent,
    root: Agent,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    """A misspelt `user` must not silently act as the admin itself (api/__init__.py: a
    query parameter the route does not know is a 400)."""
    await ann.client.put("/memories", json=memory())
    before = await everything(db)
    assert_error(await root.client.request(method, path, json=body), 400)
    assert await everything(db) == before


async def test_the_audit_trail_names_the_token(db: AsyncEngine, ann: Agent) -> None:
    """Every write through the API records an event whose actor is the token."""
    created = (await ann.client.put("/memories", json=memory())).json()
    url = f"/memories/{created['id']}"
    await ann.client.put("/memories", json=memory(content="v2"))
    await ann.client.patch(url, json={"version": 2, "importance": 0.9})
    await ann.client.delete(url)
    await ann.client.post(url + "/restore")
    await ann.client.get("/recall", params={"namespace": "facts", "key": "tea"})
    events = await events_of(db, created["id"])
    assert [event.action for event in events] == ["create", "update", "update", "delete", "restore"]
    for event in events:
        assert event.actor.startswith("token:") and event.actor == f"token:{ann.token.id}:ann"
        assert (event.actor_token_id, event.user_id) == (ann.token.id, ann.user_id)
    assert events[1].changes == {"content": {"old": "green tea", "new": "v2"}}


# --- concurrency -------------------------------------------------------------------------


async def test_concurrent_first_writes_of_one_key(db: AsyncEngine, ann: Agent) -> None:
    """Eight agents writing a new key at once: one 201, seven 200, one row, no lost write."""
    responses = await asyncio.gather(
        *(
            ann.client.put("/memories", json=memory(key="race", content=f"writer {number}"))
            for number in range(8)
        )
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * 7 + [201], [r.text for r in responses if r.status_code >= 300]
    assert len({response.json()["id"] for response in responses}) == 1
    rows = await stored_by_key(db, ann.user_id, "facts", "race")
    assert len(rows) == 1 and rows[0].version == 8
    actions = [event.action for event in await events_of(db, rows[0].id)]
    assert actions == ["create"] + ["update"] * 7


# --- OpenAPI -----------------------------------------------------------------------------

API_OPERATIONS = {
    ("/api/v1/memories", "put"),
    ("/api/v1/memories", "get"),
    ("/api/v1/memories/{memory_id}", "get"),
    ("/api/v1/memories/{memory_id}", "patch"),
    ("/api/v1/memories/{memory_id}", "delete"),
    ("/api/v1/memories/{memory_id}/restore", "post"),
    ("/api/v1/recall", "get"),
    ("/api/v1/search", "post"),
    ("/api/v1/context", "post"),
    ("/api/v1/namespaces", "get"),
}


def _ref(schema: dict[str, Any]) -> str:
    """The component a schema refers to (through an array's items), or ''."""
    if "items" in schema:
        schema = schema["items"]
    return str(schema.get("$ref", "")).rsplit("/", 1)[-1]


async def test_openapi_describes_every_operation(open_client: OpenClient) -> None:
    """Agents generate clients from /api/v1/openapi.json: every operation, its models, auth."""
    response = await open_client().get("/openapi.json")
    assert response.status_code == 200, response.text
    spec = response.json()
    operations = {
        (path, method)
        for path, item in spec["paths"].items()
        if path.startswith("/api/v1/")
        for method in item
    }
    assert operations == API_OPERATIONS

    def op(path: str, method: str) -> dict[str, Any]:
        operation: dict[str, Any] = spec["paths"][path][method]
        return operation

    def request_model(path: str, method: str) -> str:
        return _ref(op(path, method)["requestBody"]["content"]["application/json"]["schema"])

    def response_model(path: str, method: str, status: str = "200") -> str:
        return _ref(op(path, method)["responses"][status]["content"]["application/json"]["schema"])

    assert request_model("/api/v1/memories", "put") == "MemoryPut"
    assert request_model("/api/v1/memories/{memory_id}", "patch") == "MemoryPatch"
    assert request_model("/api/v1/search", "post").startswith("SearchRequest")
    assert request_model("/api/v1/context", "post") == "ContextRequest"
    assert response_model("/api/v1/memories", "put") == "MemoryPublic"
    assert response_model("/api/v1/memories", "put", "201") == "MemoryPublic"
    assert response_model("/api/v1/memories", "get") == "MemoryPage"
    for method in ("get", "patch", "delete"):
        assert response_model("/api/v1/memories/{memory_id}", method) == "MemoryPublic"
    assert response_model("/api/v1/memories/{memory_id}/restore", "post") == "MemoryPublic"
    assert response_model("/api/v1/recall", "get") == "MemoryPublic"
    assert response_model("/api/v1/search", "post") == "SearchResults"
    assert response_model("/api/v1/context", "post") == "ContextBlock"
    assert response_model("/api/v1/namespaces", "get") == "NamespaceCounts"
    assert (
        op("/api/v1/namespaces", "get")["responses"]["200"]["content"]["application/json"][
            "schema"
        ]["type"]
        == "array"
    )
    assert "409" in op("/api/v1/memories", "put")["responses"]
    assert "409" in op("/api/v1/memories/{memory_id}", "patch")["responses"]

    schemes = spec["components"]["securitySchemes"]
    bearer = [name for name, s in schemes.items() if s.get("scheme", "").lower() == "bearer"]
    assert len(bearer) == 1 and schemes[bearer[0]]["type"] == "http"
    for path, method in API_OPERATIONS:
        assert {bearer[0]: []} in op(path, method).get("security", []), (path, method)
        assert "401" in op(path, method)["responses"], (path, method)
    schemas = spec["components"]["schemas"]
    for name in ("MemoryPut", "MemoryPublic", "MemoryPage", "SearchResults", "ContextBlock"):
        assert name in schemas, name
    assert set(schemas["MemoryPublic"]["properties"]) == MEMORY_FIELDS
    assert not set(schemas["MemoryPut"]["properties"]) & {
        "id",
        "user_id",
        "access_count",
        "created_at",
        "updated_at",
    }


# --- bad input writes nothing ------------------------------------------------------------

BIG = 65_536
BAD_PUT_BODIES: list[tuple[str, Any]] = [
    # JSON's true is not the number 1 (found by schemathesis: it updated the memory).
    ("version-true", memory(version=True)),
    ("ttl-true", memory(ttl_seconds=True)),
    ("namespace-double-slash", memory(namespace="a//b")),
    ("namespace-leading-slash", memory(namespace="/facts")),
    ("namespace-dot-dot", memory(namespace="facts/../secrets")),
    ("namespace-space", memory(namespace="my facts")),
    ("namespace-too-long", memory(namespace="n" * 201)),
    ("key-control-char", memory(key="tea\x07")),
    ("key-newline", memory(key="tea\ntime")),
    ("key-surrounding-space", memory(key=" tea")),
    ("key-empty", memory(key="")),
    ("key-too-long", memory(key="k" * 256)),
    ("content-empty", memory(content="")),
    ("content-nul", memory(content="tea\x00")),
    ("content-over-limit", memory(content="x" * (BIG + 1))),
    ("content-over-limit-in-bytes", memory(content="é" * (BIG // 2 + 1))),
    ("content-over-body-limit", memory(content="x" * (2 * 1024 * 1024))),
    ("importance-above-1", memory(importance=1.5)),
    ("importance-negative", memory(importance=-0.1)),
    ("importance-string", memory(importance="high")),
    ("importance-bool", memory(importance=True)),
    ("tags-33", memory(tags=[f"t{n}" for n in range(33)])),
    ("tag-65-chars", memory(tags=["t" * 65])),
    ("tag-empty", memory(tags=["  "])),
    ("tags-a-string", memory(tags="drinks")),
    ("tags-numbers", memory(tags=[1, 2])),
    ("content-number", memory(content=5)),
    ("namespace-null", memory(namespace=None)),
    ("content-missing", {"namespace": "facts", "key": "tea"}),
    ("expires-at-naive", memory(expires_at="2030-01-01T00:00:00")),
    ("expires-at-garbage", memory(expires_at="next tuesday")),
    ("ttl-zero", memory(ttl_seconds=0)),
    ("ttl-negative", memory(ttl_seconds=-5)),
    ("version-zero", memory(version=0)),
    ("unknown-field", memory(colour="green")),
    ("a-list", [memory()]),
    ("importance-nan", b'{"namespace": "facts", "key": "tea", "content": "x", "importance": NaN}'),
    (
        "importance-infinity",
        b'{"namespace": "facts", "key": "tea", "content": "x", "importance": Infinity}',
    ),
    ("not-json", b"namespace=facts&key=tea&content=x"),
    ("truncated-json", b'{"namespace": "facts", "key": "tea", "content": "x"'),
]


@pytest.mark.parametrize(
    "body", [body for _, body in BAD_PUT_BODIES], ids=[name for name, _ in BAD_PUT_BODIES]
)
async def test_bad_put_bodies_write_nothing(db: AsyncEngine, ann: Agent, body: Any) -> None:
    """A body that breaks a SPEC 1 rule is a 4xx JSON error, on the create and the update
    path alike, and the database is exactly as it was."""
    existing = await ann.client.put("/memories", json=memory(content="original"))
    assert existing.status_code == 201
    before = await everything(db)
    if isinstance(body, bytes):
        response = await ann.client.put(
            "/memories", content=body, headers={"content-type": "application/json"}
        )
    else:
        response = await ann.client.put("/memories", json=body)
    assert_error(response)
    assert await everything(db) == before
    if isinstance(body, dict) and "key" in body:
        other_key = {**body, "key": "fresh"} if body["key"] == "tea" else body
        again = await ann.client.put("/memories", json=other_key)
        assert_error(again)
        assert await everything(db) == before, "the create path refuses it too"


async def test_a_body_over_the_size_limit_is_413(db: AsyncEngine, ann: Agent) -> None:
    """SPEC 5: a request body over the limit is a 413 JSON error, refused before it is read."""
    response = await ann.client.put("/memories", json=memory(content="x" * (2 * 1024 * 1024)))
    assert_error(response, 413)
    assert await everything(db) == ([], [])


async def test_content_at_the_limit_is_accepted(ann: Agent) -> None:
    """The positive control for the limit: exactly 65,536 bytes of UTF-8 is fine."""
    body = memory(content="é" * (BIG // 2))
    assert (await ann.client.put("/memories", json=body)).status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        {"version": 1, "importance": 1.5},
        {"version": 1, "tags": [f"t{n}" for n in range(33)]},
        {"version": 1, "tags": ["t" * 65]},
        {"version": 1, "content": ""},
        {"version": 1, "content": None},
        {"version": 1, "importance": None},
        {"version": 1, "tags": None},
        {"version": 1, "content": "x" * (BIG + 1)},
        {"version": 1, "expires_at": "2030-01-01T00:00:00"},
        {"version": 1, "namespace": "elsewhere"},
        {"version": 1, "key": "other"},
        {"version": 1, "access_count": 99},
        {"version": 1, "user_id": 1},
        {"version": "one", "content": "x"},
    ],
    ids=[
        "importance-1.5",
        "33-tags",
        "tag-65",
        "empty-content",
        "null-content",
        "null-importance",
        "null-tags",
        "content-over-limit",
        "naive-expiry",
        "namespace",
        "key",
        "access-count",
        "user-id",
        "version-string",
    ],
)
async def test_bad_patch_bodies_write_nothing(
    db: AsyncEngine, ann: Agent, body: dict[str, Any]
) -> None:
    """PATCH refuses bad values and fields it does not edit, and changes nothing."""
    created = (await ann.client.put("/memories", json=memory())).json()
    before = await everything(db)
    assert_error(await ann.client.patch(f"/memories/{created['id']}", json=body))
    assert await everything(db) == before


async def test_found_by_fuzzing_are_4xx_not_5xx(db: AsyncEngine, ann: Agent) -> None:
    """Inputs schemathesis found that crashed the app (500) or were taken for numbers:
    each is now a 4xx JSON error and writes nothing."""
    created = await ann.client.put("/memories", json=memory())
    assert created.status_code == 201
    before = await everything(db)
    assert_error(await ann.client.get(f"/memories/{2**31}"), 422)  # past PostgreSQL's int4
    assert_error(await ann.client.get(f"/memories/{2**63}"), 422)  # past SQLite's int64
    assert_error(await ann.client.get("/namespaces", params={"user": "a\x00b"}), 404)
    assert_error(await ann.client.get("/memories", params={"tag": "\x00"}), 400)
    for path, body in (
        ("/search", {"query": "tea", "tags": ["\x00"]}),
        ("/context", {"query": "tea", "tags": ["\x00"], "max_chars": 500}),
        ("/search", {"query": "tea", "limit": True}),
        ("/context", {"query": "tea", "max_chars": True}),
    ):
        assert_error(await ann.client.post(path, json=body), 422)
    assert_error(
        await ann.client.patch(f"/memories/{created.json()['id']}", json={"version": True}), 422
    )
    assert await everything(db) == before
