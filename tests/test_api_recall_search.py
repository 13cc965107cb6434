"""The JSON API: recall, ranked search, context blocks and namespaces.

Runs on SQLite and on PostgreSQL; the agents and helpers are in tests/api_support.py.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.api_support import (
    MEMORY_FIELDS,
    SCORE_PARTS,
    Agent,
    assert_error,
    events_of,
    everything,
    memory,
    stored,
    when,
)
from tests.factories import make_memory
from webapp.models import LongTermMemory
from webapp.services.search import WEIGHTS
from webapp.types import utcnow

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
        # By its word first, then by meaning (cake is close to biscuits, and no word).
        ({"query": "biscuits"}, ["also", "cake"]),
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
