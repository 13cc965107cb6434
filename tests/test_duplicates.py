"""Near-duplicate review (services/duplicates.py) on both databases: groups, merge, dismiss."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.factories import make_memory, make_user
from webapp.db import Database
from webapp.errors import InvalidInput
from webapp.models import DuplicatePair, LongTermMemory, MemoryEvent, User
from webapp.services import duplicates, vectors
from webapp.services.bulk import StalePreview
from webapp.services.principal import Principal
from webapp.types import utcnow

pytestmark = pytest.mark.skipif(not vectors.enabled(), reason="the embedding model is missing")

TEA = "The user likes green tea."
TEA_2 = "The user likes green tea!"
TEA_3 = "User enjoys green tea."
PARIS = "The capital of France is Paris."


async def embed(database: Database, memories: list[LongTermMemory]) -> None:
    """Give the queued memories their vectors, as the app's background embedder does."""
    while await vectors.drain(database):
        pass


async def memories_of(
    session: AsyncSession, user: User, contents: list[str], **extra: object
) -> list[LongTermMemory]:
    return [await make_memory(session, user=user, content=c, **extra) for c in contents]  # type: ignore[arg-type]


def id_sets(groups: list[duplicates.Group]) -> list[set[int]]:
    return [set(g.ids) for g in groups]


async def test_groups_exact_and_near_at_thresholds(db: AsyncEngine, session: AsyncSession) -> None:
    database = Database(db)
    alice = await make_user(session)
    tea, tea2, tea3, paris = await memories_of(session, alice, [TEA, TEA_2, TEA_3, PARIS])
    same = await make_memory(session, user=alice, content=PARIS)
    await embed(database, [tea, tea2, tea3, paris, same])
    assert alice.id is not None
    found = await duplicates.groups(database, alice.id, 0.90)
    assert id_sets(found) == [{tea.id, tea2.id, tea3.id}, {paris.id, same.id}]
    assert found[1].members[0].similarity == pytest.approx(1.0, abs=1e-3)
    strict = await duplicates.groups(database, alice.id, 0.99)
    assert id_sets(strict) == [{paris.id, same.id}]


async def test_other_users_deleted_and_expired_never_grouped(
    db: AsyncEngine, session: AsyncSession
) -> None:
    database = Database(db)
    alice, bob = await make_user(session), await make_user(session)
    (tea,) = await memories_of(session, alice, [TEA])
    (bobs,) = await memories_of(session, bob, [TEA])
    (gone,) = await memories_of(session, alice, [TEA], is_deleted=True, deleted_at=utcnow())
    (old,) = await memories_of(session, alice, [TEA], expires_at=utcnow() + timedelta(seconds=1))
    await session.execute(
        update(LongTermMemory)
        .where(LongTermMemory.id == old.id)  # type: ignore[arg-type]
        .values(expires_at=utcnow() - timedelta(days=1))
    )
    await session.commit()
    await embed(database, [tea, bobs, gone, old])
    assert alice.id is not None and bob.id is not None
    assert await duplicates.groups(database, alice.id, 0.80) == []
    assert await duplicates.groups(database, bob.id, 0.80) == []


async def test_freshness_after_an_edit(db: AsyncEngine, session: AsyncSession) -> None:
    database = Database(db)
    alice = await make_user(session)
    tea, tea2 = await memories_of(session, alice, [TEA, TEA_2])
    await embed(database, [tea, tea2])
    assert alice.id is not None
    assert len(await duplicates.groups(database, alice.id, 0.90)) == 1
    async with database.write() as s:
        await s.execute(
            update(LongTermMemory)
            .where(LongTermMemory.id == tea2.id)  # type: ignore[arg-type]
            .values(content=PARIS)
        )
    await embed(database, [tea2])
    assert await duplicates.groups(database, alice.id, 0.80) == []


async def test_merge_keeps_one_with_union_and_max(db: AsyncEngine, session: AsyncSession) -> None:
    database = Database(db)
    alice = await make_user(session)
    tea = await make_memory(session, user=alice, content=TEA, tags=["a"], importance=0.3)
    tea2 = await make_memory(session, user=alice, content=TEA_2, tags=["b"], importance=0.9)
    tea3 = await make_memory(session, user=alice, content=TEA_3, tags=["a", "c"])
    await embed(database, [tea, tea2, tea3])
    assert alice.id is not None
    ids = [tea.id, tea2.id, tea3.id]
    preview = await duplicates.merge_preview(database, alice.id, ids)  # type: ignore[arg-type]
    assert preview.keep == tea2.id  # the most important
    kept = await duplicates.merge(
        database,
        principal=Principal.of_user(alice),
        user_id=alice.id,
        ids=ids,  # type: ignore[arg-type]
        keep=tea.id,  # type: ignore[arg-type]
        expected=preview.fingerprint,
    )
    assert kept == tea.id
    async with database.read() as s:
        rows = {m.id: m for m in await s.scalars(select(LongTermMemory))}
        evs = list(await s.scalars(select(MemoryEvent).order_by(MemoryEvent.id)))  # type: ignore[arg-type]
    assert sorted(rows[tea.id].tags) == ["a", "b", "c"]
    assert rows[tea.id].importance == 0.9 and not rows[tea.id].is_deleted
    assert rows[tea2.id].is_deleted and rows[tea3.id].is_deleted
    assert [e.memory_id for e in evs if e.action == "update"] == [tea.id]
    deletes = [e for e in evs if e.action == "delete"]
    assert {e.memory_id for e in deletes} == {tea2.id, tea3.id}
    assert all(e.changes and e.changes["merged_into"] == tea.id for e in deletes)
    assert await duplicates.groups(database, alice.id, 0.80) == []


async def test_merge_refuses_a_stale_preview(db: AsyncEngine, session: AsyncSession) -> None:
    database = Database(db)
    alice = await make_user(session)
    tea, tea2 = await memories_of(session, alice, [TEA, TEA_2])
    assert alice.id is not None and tea.id is not None and tea2.id is not None
    preview = await duplicates.merge_preview(database, alice.id, [tea.id, tea2.id])
    async with database.write() as s:
        await s.execute(
            update(LongTermMemory)
            .where(LongTermMemory.id == tea.id)  # type: ignore[arg-type]
            .values(version=LongTermMemory.version + 1)
        )
    principal = Principal.of_user(alice)
    args = {"principal": principal, "user_id": alice.id, "ids": [tea.id, tea2.id]}
    with pytest.raises(StalePreview):
        await duplicates.merge(database, **args, keep=tea.id, expected=preview.fingerprint)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        await duplicates.merge(database, **args, keep=-1, expected=preview.fingerprint)  # type: ignore[arg-type]
    async with database.read() as s:
        assert not any(m.is_deleted for m in await s.scalars(select(LongTermMemory)))


async def test_dismiss_persists_until_a_new_member(db: AsyncEngine, session: AsyncSession) -> None:
    database = Database(db)
    alice = await make_user(session)
    tea, tea2 = await memories_of(session, alice, [TEA, TEA_2])
    await embed(database, [tea, tea2])
    assert alice.id is not None
    (group,) = await duplicates.groups(database, alice.id, 0.90)
    await duplicates.dismiss(database, alice.id, group.ids)
    assert await duplicates.groups(database, alice.id, 0.90) == []
    (tea3,) = await memories_of(session, alice, [TEA_3])
    await embed(database, [tea3])
    assert id_sets(await duplicates.groups(database, alice.id, 0.90)) == [
        {tea.id, tea2.id, tea3.id}
    ]


def test_threshold_parsing() -> None:
    assert duplicates.parse_threshold(None) == duplicates.DEFAULT_THRESHOLD
    assert duplicates.parse_threshold("0.85") == 0.85
    for bad in ("0.5", "1.5", "abc", "nan"):
        with pytest.raises(duplicates.BadThreshold):
            duplicates.parse_threshold(bad)


async def test_concurrent_refreshes_write_the_forest_once(
    db: AsyncEngine, session: AsyncSession
) -> None:
    database = Database(db)
    alice = await make_user(session)
    made = await memories_of(session, alice, [TEA, TEA_2, TEA_3])
    await embed(database, made)
    assert alice.id is not None
    await asyncio.gather(*(duplicates.refresh(database, alice.id) for _ in range(3)))
    async with database.read() as s:
        pairs = (await s.execute(select(DuplicatePair.a, DuplicatePair.b))).all()  # type: ignore[call-overload]
    # Three alike memories: a forest of two pairs joins them (not all three pairs).
    assert len(pairs) == 2 and len(set(pairs)) == 2
