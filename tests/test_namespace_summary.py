"""The maintained namespace summary stays equal to a GROUP BY over the memories, whatever
path writes them (services, bulk, import, purge, user removal), on both databases."""

from __future__ import annotations

import io
from datetime import timedelta

import orjson
import pytest
from sqlalchemy import case, delete, false, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.factories import make_memory, make_user
from webapp.db import Database
from webapp.models import LongTermMemory, MemoryCreate, MemoryUpdate, NamespaceSummary, User
from webapp.services import transfer
from webapp.services.bulk import BulkAction, Selection, apply
from webapp.services.memories import (
    delete_memory,
    purge_deleted,
    remember,
    restore_memory,
    update_memory,
)
from webapp.services.principal import Principal
from webapp.settings import Settings
from webapp.types import utcnow

_c = LongTermMemory.__table__.c  # type: ignore[attr-defined]
_s = NamespaceSummary.__table__.c  # type: ignore[attr-defined]
Row = tuple[int, str, int, int, float]


async def summary_and_truth(engine: AsyncEngine) -> tuple[list[Row], list[Row]]:
    """The summary's rows, and the same figures counted from long_term_memory."""
    alive = _c.is_deleted.is_(false())
    truth = (
        select(
            _c.user_id,
            _c.namespace,
            func.sum(case((alive, 1), else_=0)),
            func.sum(case((alive, 0), else_=1)),
            func.sum(case((alive, _c.importance), else_=0.0)),
        )
        .group_by(_c.user_id, _c.namespace)
        .order_by(_c.user_id, _c.namespace)
    )
    kept = select(
        _s.user_id, _s.namespace, _s.live_count, _s.deleted_count, _s.live_importance_sum
    ).order_by(_s.user_id, _s.namespace)
    async with engine.connect() as conn:
        expected = [tuple(row) for row in (await conn.execute(truth)).all()]
        found = [tuple(row) for row in (await conn.execute(kept)).all()]
    return found, expected  # type: ignore[return-value]


async def assert_consistent(engine: AsyncEngine) -> None:
    """The summary holds exactly the (user, namespace) pairs with rows, with their figures."""
    found, expected = await summary_and_truth(engine)
    assert [row[:4] for row in found] == [row[:4] for row in expected]
    for kept, counted in zip(found, expected, strict=True):
        assert kept[4] == pytest.approx(counted[4], abs=1e-9), kept[:2]


def _create(namespace: str, key: str, importance: float = 0.5) -> MemoryCreate:
    return MemoryCreate(namespace=namespace, key=key, content="text", importance=importance)


async def test_service_writes_keep_the_summary(db: AsyncEngine, session: AsyncSession) -> None:
    ann = await make_user(session, username="ann")
    database = Database(db)
    me = Principal.of_user(ann)
    first = await remember(database, principal=me, data=_create("a/b", "k1", 0.2))
    await remember(database, principal=me, data=_create("a/b", "k2", 0.7))
    await remember(database, principal=me, data=_create("a", "k3", 0.9))
    await assert_consistent(db)
    await remember(database, principal=me, data=_create("a/b", "k1", 0.4))  # upsert
    await assert_consistent(db)
    await update_memory(
        database, principal=me, memory_id=first.memory.id, changes=MemoryUpdate(importance=0.1)
    )
    await assert_consistent(db)
    await delete_memory(database, principal=me, memory_id=first.memory.id)
    await assert_consistent(db)
    await restore_memory(database, principal=me, memory_id=first.memory.id)
    await delete_memory(database, principal=me, memory_id=first.memory.id)
    await remember(database, principal=me, data=_create("a/b", "k1", 0.3))  # revives it
    await assert_consistent(db)
    found, _ = await summary_and_truth(db)
    assert [row[1:4] for row in found] == [("a", 1, 0), ("a/b", 2, 0)]


async def test_bulk_and_purge_keep_the_summary(db: AsyncEngine, session: AsyncSession) -> None:
    ann = await make_user(session, username="ann")
    ids = [
        (await make_memory(session, user=ann, namespace=f"n{i % 3}", importance=0.1 * i)).id
        for i in range(9)
    ]
    database = Database(db)
    me = Principal.of_user(ann)
    chosen = Selection(ids=[i for i in ids[:6] if i is not None])
    await apply(database, principal=me, selection=chosen, action=BulkAction.delete)
    await assert_consistent(db)
    await apply(
        database,
        principal=me,
        selection=Selection(ids=[ids[6]]),  # type: ignore[list-item]
        action=BulkAction.set_importance,
        value=0.95,
    )
    await assert_consistent(db)
    await apply(
        database,
        principal=me,
        selection=Selection(ids=ids[:2]),  # type: ignore[arg-type]
        action=BulkAction.restore,
    )
    await assert_consistent(db)
    await purge_deleted(database, principal=Principal.operator())
    await assert_consistent(db)
    found, _ = await summary_and_truth(db)
    assert sum(row[3] for row in found) == 0 and sum(row[2] for row in found) == 5


async def test_raw_statements_move_rows_between_namespaces_and_users(
    db: AsyncEngine, session: AsyncSession
) -> None:
    ann = await make_user(session, username="ann")
    bob = await make_user(session, username="bob")
    for i in range(4):
        await make_memory(session, user=ann, namespace="old", key=f"k{i}", importance=0.25)
    async with db.begin() as conn:
        await conn.execute(
            update(LongTermMemory).where(_c.key.in_(["k0", "k1"])).values(namespace="new/x")
        )
        await conn.execute(update(LongTermMemory).where(_c.key == "k2").values(user_id=bob.id))
        await conn.execute(update(LongTermMemory).values(access_count=_c.access_count + 1))
    await assert_consistent(db)
    async with db.begin() as conn:
        await conn.execute(delete(LongTermMemory).where(_c.namespace == "new/x"))
    await assert_consistent(db)
    found, _ = await summary_and_truth(db)
    assert [(row[1], row[2]) for row in found] == [("old", 1), ("old", 1)]


async def test_removing_a_user_removes_their_summary(
    db: AsyncEngine, session: AsyncSession
) -> None:
    ann = await make_user(session, username="ann")
    bob = await make_user(session, username="bob")
    await make_memory(session, user=ann, namespace="x")
    await make_memory(session, user=bob, namespace="x", is_deleted=True, deleted_at=utcnow())
    async with db.begin() as conn:
        await conn.execute(delete(User).where(User.username == "ann"))  # type: ignore[arg-type]
    await assert_consistent(db)
    found, _ = await summary_and_truth(db)
    assert [row[1:4] for row in found] == [("x", 0, 1)]


async def test_emptying_the_table_empties_the_summary(
    db: AsyncEngine, session: AsyncSession
) -> None:
    """PostgreSQL's TRUNCATE fires no row trigger; SQLite's unqualified DELETE (its
    truncate optimisation is off while triggers exist) must reach them too."""
    ann = await make_user(session, username="ann")
    await make_memory(session, user=ann, namespace="x")
    async with db.begin() as conn:
        if db.dialect.name == "postgresql":
            await conn.execute(text("TRUNCATE long_term_memory CASCADE"))
        else:
            await conn.execute(text("DELETE FROM long_term_memory"))
    await assert_consistent(db)
    found, _ = await summary_and_truth(db)
    assert found == []


def _line(user: str, namespace: str, key: str, **extra: object) -> bytes:
    now = utcnow().isoformat()
    record = {
        "user": user,
        "namespace": namespace,
        "key": key,
        "content": "imported",
        "tags": [],
        "importance": 0.6,
        "created_at": now,
        "updated_at": now,
        **extra,
    }
    return orjson.dumps(record) + b"\n"


async def test_import_keeps_the_summary_on_the_fast_path_and_after(db: AsyncEngine) -> None:
    database = Database(db)
    settings = Settings(secret_key="test")
    past = (utcnow() - timedelta(days=3)).isoformat()
    first = b"".join(
        [
            _line("ann", "p/q", "a"),
            _line("ann", "p/q", "b", is_deleted=True, deleted_at=past),
            _line("ann", "p", "c", expires_at=past),
            _line("bob", "z", "d"),
        ]
    )
    await transfer.import_jsonl(database, source=io.BytesIO(first), settings=settings)
    await assert_consistent(db)  # into an empty table: triggers dropped, summary rebuilt
    second = _line("ann", "p/q", "a", importance=0.1) + _line("ann", "p/q", "e")
    await transfer.import_jsonl(database, source=io.BytesIO(second), settings=settings)
    await assert_consistent(db)
    found, _ = await summary_and_truth(db)
    assert [row[1:4] for row in found] == [("p", 1, 0), ("p/q", 2, 1), ("z", 1, 0)]
