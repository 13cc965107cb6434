"""Browsing (services/browse.py): filters, keyset pagination both ways, cursors, counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from webapp.db import Database
from webapp.errors import InvalidInput
from webapp.models import SORTS, BrowseQuery, LongTermMemory, MemoryEvent, MemoryRow, User
from webapp.services.browse import Page, browse
from webapp.services.cursors import CursorSigner
from webapp.services.principal import Principal

SIGNER = CursorSigner("test-secret")
ADMIN = Principal.operator()
BASE = datetime(2026, 1, 1, tzinfo=UTC)
_memories = LongTermMemory.__table__  # type: ignore[attr-defined]

# Few distinct values, so that ties (and NULLs) are the rule, not the exception.
ROW = st.fixed_dictionaries(
    {
        "user": st.sampled_from(["u1", "u2"]),
        "namespace": st.sampled_from(["a", "a/b", "c"]),
        "importance": st.sampled_from([0.0, 0.5, 1.0]),
        "access_count": st.integers(0, 2),
        "last_accessed_at": st.one_of(st.none(), st.integers(0, 2)),
        "updated_at": st.integers(0, 2),
        "created_at": st.integers(0, 2),
        "is_deleted": st.booleans(),
        "tags": st.lists(st.sampled_from(["x", "y"]), unique=True),
    }
)


async def load(engine: AsyncEngine, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Replace every memory with rows; returns the user ids by name."""
    async with engine.begin() as conn:
        await conn.execute(delete(MemoryEvent))
        await conn.execute(delete(LongTermMemory))
        await conn.execute(delete(User))
        users = {}
        for name in ("u1", "u2"):
            result = await conn.execute(
                insert(User).values(
                    username=name,
                    password_hash="!",
                    is_admin=False,
                    is_active=True,
                    created_at=BASE,
                )
            )
            users[name] = result.inserted_primary_key[0]
        if rows:
            await conn.execute(
                insert(_memories),
                [
                    {
                        "user_id": users[row["user"]],
                        "namespace": row["namespace"],
                        "key": f"k{number}",
                        "content": "c",
                        "tags": row["tags"],
                        "importance": row["importance"],
                        "access_count": row["access_count"],
                        "last_accessed_at": None
                        if row["last_accessed_at"] is None
                        else BASE + timedelta(days=row["last_accessed_at"]),
                        "is_deleted": row["is_deleted"],
                        "deleted_at": BASE if row["is_deleted"] else None,
                        "version": 1,
                        "created_at": BASE + timedelta(days=row["created_at"]),
                        "updated_at": BASE + timedelta(days=row["updated_at"]),
                    }
                    for number, row in enumerate(rows)
                ],
            )
    return users


async def every_page(db: Database, query: BrowseQuery, principal: Principal = ADMIN) -> list[Page]:
    """All pages from the first, following next_cursor."""
    pages = [await browse(db, principal=principal, query=query, signer=SIGNER)]
    seen = {memory.id for memory in pages[0].items}
    while pages[-1].next_cursor:
        follow = query.model_copy(update={"cursor": pages[-1].next_cursor})
        pages.append(await browse(db, principal=principal, query=follow, signer=SIGNER))
        fresh = {memory.id for memory in pages[-1].items}
        assert fresh and not fresh & seen, "a page repeated rows or made no progress"
        seen |= fresh
    return pages


def sort_key(memory: LongTermMemory, sort: str) -> tuple[Any, ...]:
    """The order browse promises: NULL smallest, id breaking ties."""
    value = getattr(memory, sort.lstrip("-"))
    return (value is not None, value if value is not None else 0, memory.id)


def row(**overrides: Any) -> dict[str, Any]:
    """One memory for load(): u1's, in namespace a, never read, unless overridden."""
    base: dict[str, Any] = {
        "user": "u1",
        "namespace": "a",
        "importance": 0.5,
        "access_count": 0,
        "last_accessed_at": None,
        "updated_at": 0,
        "created_at": 0,
        "is_deleted": False,
        "tags": [],
    }
    return {**base, **overrides}


@pytest.fixture
def database(db: AsyncEngine) -> Database:
    """The service layer's handle on the test database."""
    return Database(db)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=st.lists(ROW, max_size=40),
    # the nullable sort key has the most edge cases, so it gets half of the examples
    sort=st.one_of(
        st.sampled_from(["last_accessed_at", "-last_accessed_at"]), st.sampled_from(SORTS)
    ),
    state=st.sampled_from(["active", "deleted", "all"]),
    namespace=st.sampled_from([None, "a", "a/"]),
    tag=st.sampled_from([[], ["x"], ["x", "y"]]),
    narrowing=st.sampled_from(
        [{}, {"min_importance": 0.5}, {"max_importance": 0.5}, {"accessed": "never"}]
    ),
    # A cap below the matches takes the other way of finding a narrowed page (_narrows).
    cap=st.sampled_from([1_000, 2]),
    limit=st.integers(1, 7),
)
async def test_paging_visits_every_match_once_in_order_both_ways(
    db: AsyncEngine,
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
    rows: list[dict[str, Any]],
    sort: str,
    state: str,
    namespace: str | None,
    tag: list[str],
    narrowing: dict[str, Any],
    cap: int,
    limit: int,
) -> None:
    import webapp.services.browse as module

    await load(db, rows)
    query = BrowseQuery(
        sort=sort, state=state, namespace=namespace, tag=tag, limit=limit, **narrowing
    )
    everything = await browse(
        database, principal=ADMIN, query=query.model_copy(update={"limit": 200}), signer=SIGNER
    )
    assert everything.next_cursor is None
    monkeypatch.setattr(module, "COUNT_CAP", cap)

    pages = await every_page(database, query)
    forward = [memory for page in pages for memory in page.items]
    ids = [memory.id for memory in forward]
    assert len(ids) == len(set(ids))
    assert set(ids) == {memory.id for memory in everything.items}
    assert all(len(page.items) == limit for page in pages[:-1])
    counted = (min(len(ids), cap), len(ids) > cap)
    assert all((page.count, page.count_capped) == counted for page in pages)
    keys = [sort_key(memory, sort) for memory in forward]
    assert keys == sorted(keys, reverse=sort.startswith("-"))
    assert pages[0].prev_cursor is None

    backward: list[int] = []
    page = pages[-1]
    backward = [memory.id for memory in page.items]  # type: ignore[misc]
    while page.prev_cursor:
        back = query.model_copy(update={"cursor": page.prev_cursor})
        page = await browse(database, principal=ADMIN, query=back, signer=SIGNER)
        earlier = [memory.id for memory in page.items]
        assert earlier and not set(earlier) & set(backward), "paging back repeated rows"
        backward = earlier + backward  # type: ignore[operator]
    assert backward == ids


async def test_filters(db: AsyncEngine, database: Database) -> None:
    now = datetime.now(UTC)
    users = await load(
        db,
        [
            row(importance=0.2, tags=["x"]),
            row(
                namespace="a/b",
                importance=0.9,
                access_count=1,
                last_accessed_at=1,
                updated_at=1,
                tags=["x", "y"],
            ),
            row(user="u2", namespace="c", updated_at=2, is_deleted=True),
        ],
    )
    async with db.begin() as conn:
        await conn.execute(
            _memories.update()
            .where(_memories.c.key == "k1")
            .values(expires_at=now + timedelta(days=3), last_accessed_at=now)
        )

    async def keys(**filters: Any) -> list[str]:
        page = await browse(
            database,
            principal=ADMIN,
            query=BrowseQuery(sort="created_at", **filters),
            signer=SIGNER,
        )
        return sorted(memory.key for memory in page.items)

    assert await keys() == ["k0", "k1"]
    assert await keys(state="all") == ["k0", "k1", "k2"]
    assert await keys(state="deleted") == ["k2"]
    assert await keys(user="u2", state="all") == ["k2"]
    assert await keys(user="nobody") == []
    assert await keys(namespace="a") == ["k0"]
    assert await keys(namespace="a/") == ["k0", "k1"]
    assert await keys(tag=["y"]) == ["k1"]
    assert await keys(tag=["x", "y"], tags_mode="any") == ["k0", "k1"]
    assert await keys(tag=["x", "y"], tags_mode="all") == ["k1"]
    assert await keys(min_importance=0.5, state="all") == ["k1", "k2"]
    assert await keys(max_importance=0.2) == ["k0"]
    assert await keys(expiring_within=7) == ["k1"]
    assert await keys(expiring_within=1) == []
    assert await keys(accessed="never") == ["k0"]
    assert await keys(accessed="stale") == ["k0"]  # created 2026-01-01, never read since
    assert users["u1"] != users["u2"]


async def test_rows_hold_every_column_the_state_and_the_owners_names(
    db: AsyncEngine, database: Database
) -> None:
    """A page's rows are plain tuples read without the ORM: they must still say what the
    ORM object says, state included, and the page names whose rows they are."""
    now = datetime.now(UTC)
    users = await load(
        db, [row(), row(user="u2", is_deleted=True), row(tags=["x", "y"]), row(user="u2")]
    )
    async with db.begin() as conn:
        await conn.execute(
            _memories.update()
            .where(_memories.c.key.in_(["k1", "k2"]))
            .values(expires_at=now - timedelta(hours=1))
        )
        await conn.execute(
            _memories.update().where(_memories.c.key == "k3").values(expires_at=now + timedelta(1))
        )
    page = await browse(
        database, principal=ADMIN, query=BrowseQuery(state="all", sort="created_at"), signer=SIGNER
    )
    assert MemoryRow._fields == (*(column.name for column in _memories.c), "state")
    async with database.read() as session:
        for memory in page.items:
            loaded = await session.get(LongTermMemory, memory.id)
            assert loaded is not None
            assert memory._asdict() == {
                **{column.name: getattr(loaded, column.name) for column in _memories.c},
                "state": loaded.state,
            }
    states = {memory.key: memory.state for memory in page.items}
    assert states == {"k0": "active", "k1": "deleted", "k2": "expired", "k3": "active"}
    assert page.owners == {users["u1"]: "u1", users["u2"]: "u2"}
    one_user = await browse(
        database, principal=ADMIN, query=BrowseQuery(user="u2", state="all"), signer=SIGNER
    )
    assert len(one_user.items) == 2 and one_user.owners == {users["u2"]: "u2"}


async def test_an_ordinary_user_sees_only_their_own(db: AsyncEngine, database: Database) -> None:
    users = await load(db, [row(user=name) for name in ("u1", "u2", "u2")])
    alice = Principal(user_id=users["u1"], username="u1")
    page = await browse(database, principal=alice, query=BrowseQuery(), signer=SIGNER)
    assert [memory.user_id for memory in page.items] == [users["u1"]]
    assert page.count == 1
    other = await browse(database, principal=alice, query=BrowseQuery(user="u2"), signer=SIGNER)
    assert other.items == [] and other.count == 0


async def test_counts_are_exact_up_to_the_cap(
    db: AsyncEngine, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    import webapp.services.browse as module

    await load(db, [row()] * 12)
    monkeypatch.setattr(module, "COUNT_CAP", 10)
    page = await browse(database, principal=ADMIN, query=BrowseQuery(limit=5), signer=SIGNER)
    assert (page.count, page.count_capped) == (10, True)
    monkeypatch.setattr(module, "COUNT_CAP", 12)
    page = await browse(database, principal=ADMIN, query=BrowseQuery(limit=5), signer=SIGNER)
    assert (page.count, page.count_capped) == (12, False)


async def test_a_page_past_the_last_match_still_counts_the_matches(
    db: AsyncEngine, database: Database
) -> None:
    """The count comes with the page's rows; a page with none (its rows deleted since the
    cursor was made) must still report how many rows match."""
    await load(db, [row(created_at=day) for day in range(3)])
    query = BrowseQuery(sort="created_at", limit=2)
    first = await browse(database, principal=ADMIN, query=query, signer=SIGNER)
    assert first.next_cursor is not None and first.count == 3
    async with db.begin() as conn:
        await conn.execute(delete(_memories).where(_memories.c.key == "k2"))
    past = await browse(
        database,
        principal=ADMIN,
        query=query.model_copy(update={"cursor": first.next_cursor}),
        signer=SIGNER,
    )
    assert past.items == [] and (past.count, past.count_capped) == (2, False)
    empty = await browse(database, principal=ADMIN, query=BrowseQuery(user="nobody"), signer=SIGNER)
    assert empty.items == [] and empty.count == 0


async def test_a_page_deep_in_tied_values_reads_what_the_first_page_reads(
    db: AsyncEngine, database: Database
) -> None:
    """An import gives thousands of rows one updated_at: page 41 inside such a block must
    seek to its cursor, not read the 2,000 tied rows before it (counted on SQLite in
    virtual-machine steps, which do not depend on the machine's speed)."""
    if database.dialect != "sqlite":
        pytest.skip("PostgreSQL seeks a row-value comparison by both columns itself")
    await load(db, [row()] * 3_000)
    pages = [await browse(database, principal=ADMIN, query=BrowseQuery(), signer=SIGNER)]
    for _ in range(40):
        follow = BrowseQuery(cursor=pages[-1].next_cursor)
        pages.append(await browse(database, principal=ADMIN, query=follow, signer=SIGNER))
    assert len(pages[-1].items) == 50
    assert max(m.id for m in pages[-1].items) < min(m.id for m in pages[-2].items)
    steps: list[int] = []

    async def steps_for(query: BrowseQuery) -> int:
        async with database.pinned_reads():
            async with database.read() as session:
                raw = await (await session.connection()).get_raw_connection()
            driver = raw.driver_connection
            await driver.set_progress_handler(lambda: steps.append(1), 100)
            try:
                steps.clear()
                await browse(database, principal=ADMIN, query=query, signer=SIGNER)
                return len(steps)
            finally:
                await driver.set_progress_handler(None, 0)

    first = await steps_for(BrowseQuery())
    deep = await steps_for(BrowseQuery(cursor=pages[-2].next_cursor))
    assert deep <= 1.5 * first, (first, deep)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda cursor: cursor[:-2] + ("AA" if not cursor.endswith("AA") else "BB"),
        lambda cursor: "not-a-cursor",
        lambda cursor: CursorSigner("another-secret").dump(SIGNER.load(cursor, sort="-updated_at")),
    ],
    ids=["tampered", "garbage", "foreign key"],
)
async def test_a_bad_cursor_is_invalid_input(
    db: AsyncEngine, database: Database, mangle: Any
) -> None:
    await load(db, [row()] * 3)
    first = await browse(database, principal=ADMIN, query=BrowseQuery(limit=1), signer=SIGNER)
    assert first.next_cursor
    with pytest.raises(InvalidInput):
        await browse(
            database,
            principal=ADMIN,
            query=BrowseQuery(limit=1, cursor=mangle(first.next_cursor)),
            signer=SIGNER,
        )
    with pytest.raises(InvalidInput, match="another sort"):
        await browse(
            database,
            principal=ADMIN,
            query=BrowseQuery(limit=1, sort="importance", cursor=first.next_cursor),
            signer=SIGNER,
        )
