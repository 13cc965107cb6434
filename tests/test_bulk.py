"""Bulk actions (services/bulk.py): all or nothing, audited, scoped, on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.factories import make_memory, make_user
from webapp.db import Database
from webapp.errors import InvalidInput, NotFound
from webapp.models import BrowseQuery, LongTermMemory, MemoryEvent, User
from webapp.services import bulk
from webapp.services.bulk import BulkAction, Selection, StalePreview
from webapp.services.edits import add_tags, set_importance
from webapp.services.principal import Principal
from webapp.types import utcnow


async def snapshot(engine: AsyncEngine) -> list[tuple[Any, ...]]:
    """Every memory's editable state and the number of events: what 'nothing changed' means."""
    async with engine.connect() as conn:
        table = LongTermMemory.__table__  # type: ignore[attr-defined]
        rows = await conn.execute(
            select(
                table.c.id,
                table.c.tags,
                table.c.importance,
                table.c.expires_at,
                table.c.is_deleted,
                table.c.version,
            ).order_by(table.c.id)
        )
        count = (await conn.execute(select(func.count()).select_from(MemoryEvent))).scalar_one()
        return [tuple(row) for row in rows] + [("events", count)]


@pytest.fixture
async def people(session: AsyncSession) -> tuple[User, User]:
    """alice with three memories, bob with one."""
    alice = await make_user(session, username="alice")
    bob = await make_user(session, username="bob")
    for number in range(3):
        await make_memory(session, user=alice, key=f"a{number}", tags=["work"], importance=0.5)
    await make_memory(session, user=bob, key="b0", tags=["work"])
    return alice, bob


async def ids_of(engine: AsyncEngine, user: User) -> list[int]:
    """The ids of user's memories, oldest first."""
    async with engine.connect() as conn:
        query = select(LongTermMemory.id).where(LongTermMemory.user_id == user.id)  # type: ignore[arg-type]
        return sorted((await conn.execute(query)).scalars())


@pytest.mark.parametrize(
    ("action", "value", "check"),
    [
        (BulkAction.add_tag, " Urgent ", lambda m: m.tags == ["work", "urgent"]),
        (BulkAction.remove_tag, "work", lambda m: m.tags == []),
        (BulkAction.set_importance, 0.9, lambda m: m.importance == 0.9),
        (BulkAction.set_expiry, utcnow() + timedelta(days=3), lambda m: m.expires_at is not None),
        (BulkAction.delete, None, lambda m: m.is_deleted and m.deleted_at is not None),
    ],
)
async def test_each_action_changes_every_selected_memory_with_an_event(
    db: AsyncEngine, people: tuple[User, User], action: BulkAction, value: Any, check: Any
) -> None:
    alice, _ = people
    database = Database(db)
    ids = await ids_of(db, alice)
    result = await bulk.apply(
        database,
        principal=Principal.of_user(alice),
        selection=Selection(ids=ids),
        action=action,
        value=value,
    )
    assert (result.changed, result.unchanged) == (3, 0)
    async with database.read() as session:
        memories = (
            (
                await session.execute(
                    select(LongTermMemory).where(LongTermMemory.id.in_(ids))  # type: ignore[union-attr]
                )
            )
            .scalars()
            .all()
        )
        logged = (
            (
                await session.execute(
                    select(MemoryEvent).where(MemoryEvent.memory_id.in_(ids))  # type: ignore[attr-defined]
                )
            )
            .scalars()
            .all()
        )
    assert all(check(memory) and memory.version == 2 for memory in memories)
    expected_action = "delete" if action is BulkAction.delete else "update"
    assert sorted(event.memory_id for event in logged) == ids
    assert {event.action for event in logged} == {expected_action}
    assert all(event.changes for event in logged)


async def test_restore_and_unchanged_rows(db: AsyncEngine, people: tuple[User, User]) -> None:
    alice, _ = people
    database, principal = Database(db), Principal.of_user(alice)
    ids = await ids_of(db, alice)
    await bulk.apply(
        database, principal=principal, selection=Selection(ids=ids[:2]), action=BulkAction.delete
    )
    result = await bulk.apply(
        database, principal=principal, selection=Selection(ids=ids), action=BulkAction.restore
    )
    assert (result.changed, result.unchanged) == (2, 1)
    again = await bulk.apply(
        database,
        principal=principal,
        selection=Selection(ids=ids),
        action=BulkAction.remove_tag,
        value="absent",
    )
    assert (again.changed, again.unchanged) == (0, 3)


@pytest.mark.parametrize(
    "make_failure",
    ["missing id", "other user's id", "bad importance", "too many tags"],
)
async def test_one_bad_row_changes_nothing(
    db: AsyncEngine, session: AsyncSession, people: tuple[User, User], make_failure: str
) -> None:
    alice, bob = people
    database, principal = Database(db), Principal.of_user(alice)
    ids = await ids_of(db, alice)
    action, value = BulkAction.set_importance, 0.1
    expected: type[Exception] = InvalidInput
    if make_failure == "missing id":
        ids, expected = [*ids, 999_999], NotFound
    elif make_failure == "other user's id":
        ids, expected = [*ids, *(await ids_of(db, bob))], NotFound
    elif make_failure == "bad importance":
        value = 1.5
    else:
        crowded = await make_memory(
            session, user=alice, key="crowded", tags=[f"t{i}" for i in range(32)]
        )
        ids = [*ids, crowded.id]  # type: ignore[list-item]
        action, value = BulkAction.add_tag, "one-more"
    before = await snapshot(db)
    with pytest.raises(expected):
        await bulk.apply(
            database,
            principal=principal,
            selection=Selection(ids=ids),
            action=action,
            value=value,
        )
    assert await snapshot(db) == before


async def test_selection_by_filter_and_preview(db: AsyncEngine, people: tuple[User, User]) -> None:
    alice, bob = people
    database = Database(db)
    selection = Selection(query=BrowseQuery(tag=["work"]))
    mine = await bulk.preview(database, principal=Principal.of_user(alice), selection=selection)
    assert mine.count == 3 and len(mine.sample) == 3
    assert {row.owner for row in mine.sample} == {"alice"}
    everyone = await bulk.preview(database, principal=Principal.operator(), selection=selection)
    assert everyone.count == 4
    result = await bulk.apply(
        database, principal=Principal.operator(), selection=selection, action=BulkAction.delete
    )
    assert result.changed == 4
    after = await bulk.preview(database, principal=Principal.operator(), selection=selection)
    assert after.count == 0  # the filter's default state is active
    assert bob.id is not None


async def test_an_empty_selection_is_refused(db: AsyncEngine, people: tuple[User, User]) -> None:
    with pytest.raises(InvalidInput):
        await bulk.apply(
            Database(db),
            principal=Principal.operator(),
            selection=Selection(),
            action=BulkAction.delete,
        )


async def test_a_failure_midway_through_the_writes_changes_nothing(
    db: AsyncEngine, people: tuple[User, User], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fifth statement fails after the UPDATE and a first batch of events were
    written: all of it is rolled back."""
    alice, _ = people
    monkeypatch.setattr(bulk, "BATCH", 1)
    real_execute = AsyncSession.execute
    calls = 0

    async def failing_execute(self: AsyncSession, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 5:  # the read, the re-check, the UPDATE, one INSERT, then this one
            raise RuntimeError("the disk is full")
        return await real_execute(self, *args, **kwargs)

    before = await snapshot(db)
    monkeypatch.setattr(AsyncSession, "execute", failing_execute)
    with pytest.raises(RuntimeError):
        await bulk.apply(
            Database(db),
            principal=Principal.of_user(alice),
            selection=Selection(ids=await ids_of(db, alice)),
            action=BulkAction.set_importance,
            value=0.2,
        )
    monkeypatch.setattr(AsyncSession, "execute", real_execute)
    assert calls == 5
    assert await snapshot(db) == before


@pytest.mark.parametrize("confirmed", [True, False])
async def test_an_edit_between_the_read_and_the_write_is_never_overwritten(
    db: AsyncEngine, people: tuple[User, User], monkeypatch: pytest.MonkeyPatch, confirmed: bool
) -> None:
    """The rows are prepared outside the write lock: a memory edited in between makes a
    confirmed preview stale (nothing written), and an unconfirmed action is worked out
    again on the rows as they are now (the edit kept, events from the new version)."""
    alice, _ = people
    database, principal = Database(db), Principal.of_user(alice)
    ids = await ids_of(db, alice)
    selection = Selection(ids=ids)
    seen = await bulk.preview(database, principal=principal, selection=selection)
    real_write = Database.write
    edited = False

    def write_after_an_edit(self: Database, **kwargs: Any) -> Any:
        nonlocal edited
        if edited:
            return real_write(self, **kwargs)
        edited = True

        @asynccontextmanager
        async def later() -> AsyncIterator[AsyncSession]:
            await add_tags(self, principal=principal, memory_id=ids[0], tags=["urgent"])
            async with real_write(self, **kwargs) as session:
                yield session

        return later()

    monkeypatch.setattr(Database, "write", write_after_an_edit)
    expected = seen.fingerprint if confirmed else None
    if confirmed:
        with pytest.raises(StalePreview):
            await bulk.apply(
                database,
                principal=principal,
                selection=selection,
                action=BulkAction.add_tag,
                value="late",
                expected=expected,
            )
        monkeypatch.setattr(Database, "write", real_write)
        async with db.connect() as conn:
            tags = await conn.execute(select(LongTermMemory.tags).where(LongTermMemory.id.in_(ids)))  # type: ignore[attr-defined]
            assert all("late" not in row.tags for row in tags)
        return
    result = await bulk.apply(
        database, principal=principal, selection=selection, action=BulkAction.add_tag, value="late"
    )
    assert result.changed == 3
    async with db.connect() as conn:
        row = (
            await conn.execute(
                select(
                    LongTermMemory.importance, LongTermMemory.version, LongTermMemory.tags
                ).where(
                    LongTermMemory.id == ids[0]  # type: ignore[arg-type]
                )
            )
        ).one()
    assert {"urgent", "late"} <= set(row.tags)
    assert row.version == 3


@pytest.mark.parametrize("change", ["edited", "added", "removed"])
async def test_a_stale_preview_is_refused(
    db: AsyncEngine, session: AsyncSession, people: tuple[User, User], change: str
) -> None:
    """Rows edited, added or removed since the preview: StalePreview, nothing written."""
    alice, _ = people
    database, principal = Database(db), Principal.of_user(alice)
    selection = Selection(query=BrowseQuery(tag=["work"]))
    seen = await bulk.preview(database, principal=principal, selection=selection)
    ids = await ids_of(db, alice)
    if change == "edited":
        await set_importance(database, principal=principal, memory_id=ids[0], importance=0.9)
    elif change == "added":
        await make_memory(session, user=alice, key="new", tags=["work"])
    else:
        await bulk.apply(
            database,
            principal=principal,
            selection=Selection(ids=ids[:1]),
            action=BulkAction.delete,
        )
    before = await snapshot(db)
    with pytest.raises(StalePreview):
        await bulk.apply(
            database,
            principal=principal,
            selection=selection,
            action=BulkAction.delete,
            expected=seen.fingerprint,
        )
    assert await snapshot(db) == before
    fresh = await bulk.preview(database, principal=principal, selection=selection)
    result = await bulk.apply(
        database,
        principal=principal,
        selection=selection,
        action=BulkAction.delete,
        expected=fresh.fingerprint,
    )
    assert result.changed == fresh.count


async def test_a_non_admin_never_reaches_others_rows(
    db: AsyncEngine, people: tuple[User, User]
) -> None:
    """By filter (even naming bob) alice's selection holds only hers; bob's ids are 404."""
    alice, bob = people
    database, principal = Database(db), Principal.of_user(alice)
    named = Selection(query=BrowseQuery(user="bob"))
    assert (await bulk.preview(database, principal=principal, selection=named)).count == 0
    every = await bulk.apply(
        database,
        principal=principal,
        selection=Selection(query=BrowseQuery()),
        action=BulkAction.add_tag,
        value="mine",
    )
    assert every.changed == 3
    bobs = await ids_of(db, bob)
    with pytest.raises(NotFound):
        await bulk.preview(database, principal=principal, selection=Selection(ids=bobs))
    before = await snapshot(db)
    with pytest.raises(NotFound):
        await bulk.apply(
            database, principal=principal, selection=Selection(ids=bobs), action=BulkAction.delete
        )
    assert await snapshot(db) == before


async def test_undo_restores_exactly_what_one_bulk_delete_deleted(
    db: AsyncEngine, people: tuple[User, User]
) -> None:
    alice, bob = people
    database, principal = Database(db), Principal.of_user(alice)
    ids = await ids_of(db, alice)
    await bulk.apply(
        database, principal=principal, selection=Selection(ids=ids[:1]), action=BulkAction.delete
    )
    done = await bulk.apply(
        database, principal=principal, selection=Selection(ids=ids[1:]), action=BulkAction.delete
    )
    await bulk.apply(
        database,
        principal=Principal.of_user(bob),
        selection=Selection(ids=await ids_of(db, bob)),
        action=BulkAction.delete,
    )
    undone = await bulk.apply(
        database,
        principal=principal,
        selection=Selection(deleted_at=done.at),
        action=BulkAction.restore,
    )
    assert undone.changed == 2
    states = {row[0]: row[4] for row in (await snapshot(db))[:-1]}
    assert [states[memory_id] for memory_id in ids] == [True, False, False]
    assert all(states[memory_id] for memory_id in await ids_of(db, bob))
