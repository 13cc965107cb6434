"""The JSON API: GET /memories, its filters, sorts and keyset pages.

Runs on SQLite and on PostgreSQL; the agents and helpers are in tests/api_support.py.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.api_support import (
    MEMORY_FIELDS,
    PAGE_FIELDS,
    Agent,
    assert_error,
    keys,
    memory,
    stored,
)
from tests.factories import make_memories_for_filters, make_memory
from webapp.models import LongTermMemory
from webapp.types import utcnow

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
    """Each browse filter narrows the list to the memories it names (and only Ann's)."""
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
