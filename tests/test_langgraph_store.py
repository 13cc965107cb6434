"""webapp.langgraph_store.MemoryAdminStore against a real `memory-admin serve`, on both
databases. Where LangGraph's model has an answer of its own, the store must give the
answer of LangGraph's reference store (InMemoryStore) for the same operations."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langgraph.store.base import BaseStore, InvalidNamespaceError, Item
from langgraph.store.memory import InMemoryStore
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.factories import make_token, make_user
from tests.mcp_support import events_of
from tests.serve_support import Server
from webapp.langgraph_store import MemoryAdminStore, MemoryAdminStoreError
from webapp.models import LongTermMemory

_memories = LongTermMemory.__table__  # type: ignore[attr-defined]

pytestmark = pytest.mark.slow


@pytest.fixture
async def ann_token(session: AsyncSession, db: AsyncEngine) -> tuple[int, str]:
    """ann's token: its id and secret."""
    ann = await make_user(session, username="ann")
    token, secret = await make_token(session, user=ann, name="langgraph")
    assert token.id is not None
    return token.id, secret


@pytest.fixture
def store(running_app: Server, ann_token: tuple[int, str]) -> Iterator[MemoryAdminStore]:
    with_store = MemoryAdminStore(running_app.url, token=ann_token[1])
    yield with_store
    with_store.close()


WRITES: list[tuple[tuple[str, ...], str, dict[str, Any]]] = [
    (("users", "ann", "prefs"), "drink", {"text": "Ann drinks green tea", "rank": 3}),
    (("users", "ann", "prefs"), "food", {"text": "Ann likes ramen", "rank": 5}),
    (("users", "ann"), "pet", {"text": "Ann has a cat called Miso", "rank": 4, "tags": ["a"]}),
    (("users", "bob"), "pet", {"text": "Bob has a dog", "rank": 1}),
    (("docs", "v1"), "intro", {"text": "Read me first", "nested": {"level": 2}}),
]


def _fill(store: BaseStore) -> None:
    for namespace, key, value in WRITES:
        store.put(namespace, key, value)


async def _rows(db: AsyncEngine) -> dict[int, Any]:
    """Every memory row, by id."""
    async with db.connect() as conn:
        return {row.id: row for row in (await conn.execute(select(_memories))).all()}


def _shape(items: list[Item]) -> list[tuple[tuple[str, ...], str, dict[str, Any]]]:
    return sorted((item.namespace, item.key, item.value) for item in items)


async def test_put_get_delete_round_trip(
    store: MemoryAdminStore, ann_token: tuple[int, str], db: AsyncEngine
) -> None:
    namespace = ("users", "ann", "prefs")
    store.put(namespace, "drink", {"text": "Ann drinks tea", "n": [1, 2]})
    got = store.get(namespace, "drink")
    assert got is not None
    assert (got.namespace, got.key, got.value) == (
        namespace,
        "drink",
        {"text": "Ann drinks tea", "n": [1, 2]},
    )
    assert got.created_at.tzinfo is not None and got.updated_at >= got.created_at
    store.put(namespace, "drink", {"text": "Ann drinks green tea"})
    again = store.get(namespace, "drink")
    assert again is not None and again.value == {"text": "Ann drinks green tea"}
    assert again.created_at == got.created_at
    store.delete(namespace, "drink")
    assert store.get(namespace, "drink") is None
    store.delete(namespace, "drink")  # deleting what is gone is no error
    assert store.get(("users", "nobody"), "nothing") is None
    assert store.get(("not a namespace!",), "k") is None

    (memory_id, row), *others = (await _rows(db)).items()
    assert not others and row.namespace == "users/ann/prefs"
    assert row.is_deleted  # a soft delete: a person can restore it
    actor = f"token:{ann_token[0]}:ann"
    assert await events_of(db, memory_id) == [
        ("create", actor),
        ("update", actor),
        ("delete", actor),
    ]


async def test_answers_as_langgraphs_own_store_does(store: MemoryAdminStore) -> None:
    reference = InMemoryStore()
    _fill(store)
    _fill(reference)
    for prefix, filter_ in [
        ((), None),
        (("users",), None),
        (("users", "ann"), None),
        (("users", "ann", "prefs"), None),
        (("users",), {"rank": {"$gte": 3}}),
        (("users",), {"rank": {"$lt": 4}, "text": {"$ne": "Ann likes ramen"}}),
        ((), {"nested": {"level": 2}}),
        ((), {"tags": ["a"]}),
        (("users", "carol"), None),
    ]:
        ours = store.search(prefix, filter=filter_, limit=50)
        theirs = reference.search(prefix, filter=filter_, limit=50)
        assert _shape(ours) == _shape(theirs), (prefix, filter_)
        assert all(item.score is None for item in ours)
    for options in [
        {},
        {"prefix": ("users",)},
        {"suffix": ("pet",)},
        {"prefix": ("users", "*", "prefs")},
        {"max_depth": 1},
        {"max_depth": 2, "prefix": ("users",)},
        {"limit": 2, "offset": 1},
    ]:
        assert store.list_namespaces(**options) == reference.list_namespaces(**options), options
    newest_first = store.search(("users",), limit=2, offset=1)
    assert [item.key for item in newest_first] == ["pet", "food"]  # of pet, pet, food, drink


async def test_search_with_a_query_is_the_servers_ranking(store: MemoryAdminStore) -> None:
    _fill(store)
    found = store.search(("users",), query="green tea")
    assert [item.key for item in found][:1] == ["drink"]
    assert found[0].score is not None and 0 < found[0].score <= 1
    assert all(item.namespace[0] == "users" for item in found)
    ranked = store.search((), query="cat", filter={"rank": {"$gt": 3}})
    assert [(item.namespace, item.key) for item in ranked] == [(("users", "ann"), "pet")]


async def test_the_async_api(store: MemoryAdminStore) -> None:
    await store.aput(("users", "ann"), "pet", {"text": "Ann has a cat"})
    got = await store.aget(("users", "ann"), "pet")
    assert got is not None and got.value == {"text": "Ann has a cat"}
    assert [item.key for item in await store.asearch(("users",), query="cat")] == ["pet"]
    assert await store.alist_namespaces() == [("users", "ann")]
    await store.adelete(("users", "ann"), "pet")
    assert await store.aget(("users", "ann"), "pet") is None
    await store.aclose()


async def test_ttl_becomes_the_memorys_expiry(store: MemoryAdminStore, db: AsyncEngine) -> None:
    store.put(("notes",), "soon", {"text": "gone in an hour"}, ttl=60)
    store.put(("notes",), "kept", {"text": "no expiry"})
    expiry = {row.key: row.expires_at for row in (await _rows(db)).values()}
    assert expiry["kept"] is None and expiry["soon"] is not None


async def test_refusals(running_app: Server, store: MemoryAdminStore) -> None:
    with pytest.raises(InvalidNamespaceError, match="namespace"):
        store.put(("has space",), "k", {"a": 1})
    with pytest.raises(MemoryAdminStoreError) as refused:
        store.put(("ok",), " padded ", {"a": 1})
    assert refused.value.status == 422
    stranger = MemoryAdminStore(running_app.url, token="mat_not-a-token")
    with pytest.raises(MemoryAdminStoreError) as unauthorized:
        stranger.get(("users",), "k")
    assert unauthorized.value.status == 401
    assert unauthorized.value.detail == "the API token is unknown or revoked"
    stranger.close()


async def test_a_graph_remembers_across_runs(store: MemoryAdminStore) -> None:
    """A LangGraph agent's node writes what it learns and a later run reads it back."""
    from langgraph.graph import END, START, StateGraph
    from langgraph.runtime import Runtime
    from typing_extensions import TypedDict

    class State(TypedDict):
        user: str
        said: str
        known: list[str]

    def node(state: State, runtime: Runtime[None]) -> dict[str, Any]:
        assert runtime.store is not None
        namespace = ("users", state["user"], "facts")
        if state["said"]:
            runtime.store.put(namespace, f"fact-{len(state['said'])}", {"text": state["said"]})
        found = runtime.store.search(namespace, query="what does she drink", limit=5)
        return {"known": [item.value["text"] for item in found]}

    builder = StateGraph(State)
    builder.add_node("remember", node)
    builder.add_edge(START, "remember")
    builder.add_edge("remember", END)
    graph = builder.compile(store=store)
    graph.invoke({"user": "ann", "said": "Ann drinks green tea", "known": []})
    later = graph.invoke({"user": "ann", "said": "", "known": []})
    assert later["known"] == ["Ann drinks green tea"]
    assert store.list_namespaces(prefix=("users",)) == [("users", "ann", "facts")]


async def test_an_admins_token_may_act_for_a_user(
    running_app: Server, session: AsyncSession, ann_token: tuple[int, str]
) -> None:
    root = await make_user(session, username="root", is_admin=True)
    _token, secret = await make_token(session, user=root, name="langgraph-admin")
    for_ann = MemoryAdminStore(running_app.url, token=secret, user="ann")
    for_ann.put(("notes",), "k", {"text": "written by root for ann"})
    ann = MemoryAdminStore(running_app.url, token=ann_token[1])
    got = ann.get(("notes",), "k")
    assert got is not None and got.value == {"text": "written by root for ann"}
    as_root = MemoryAdminStore(running_app.url, token=secret)  # without user=: root's own
    assert as_root.get(("notes",), "k") is None and as_root.list_namespaces() == []
    for store in (for_ann, ann, as_root):
        store.close()
