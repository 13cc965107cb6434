"""A memory's history and revert (services/history.py), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from webapp.db import Database
from webapp.errors import Conflict, NotFound, VersionConflict
from webapp.models import (
    EventAction,
    LongTermMemory,
    MemoryCreate,
    MemoryEvent,
    MemoryUpdate,
    User,
)
from webapp.services import memories
from webapp.services.history import line_diff, memory_history, revert_memory
from webapp.services.principal import Principal
from webapp.services.tokens import create_token

from .factories import make_user


async def _people(database: Database) -> tuple[Principal, Principal, Principal]:
    async with database.read() as session:
        ann = await make_user(session, username="ann")
        bob = await make_user(session, username="bob")
        root = await make_user(session, username="root", is_admin=True)
    return Principal.of_user(ann), Principal.of_user(bob), Principal.of_user(root)


async def _create(database: Database, principal: Principal, content: str = "v1") -> int:
    data = MemoryCreate(namespace="facts", key="tea", content=content, tags=["a"])
    memory = (await memories.remember(database, principal=principal, data=data)).memory
    assert memory.id is not None
    return memory.id


async def _edit(database: Database, principal: Principal, memory_id: int, **changes: Any) -> int:
    update = MemoryUpdate.model_validate(changes)
    memory = await memories.update_memory(
        database, principal=principal, memory_id=memory_id, changes=update
    )
    return memory.version


async def _memory(database: Database, principal: Principal, memory_id: int) -> LongTermMemory:
    return await memories.get_memory(
        database, principal=principal, memory_id=memory_id, include_deleted=True
    )


async def _event_count(database: Database, memory_id: int) -> int:
    async with database.read() as session:
        query = select(func.count()).where(MemoryEvent.memory_id == memory_id)
        return int(await session.scalar(query) or 0)


async def test_history_shows_diffs_newest_first_with_initial_values(database: Database) -> None:
    ann, _, _ = await _people(database)
    memory_id = await _create(database, ann)
    await _edit(database, ann, memory_id, content="v2", importance=0.9)
    await _edit(database, ann, memory_id, tags=["a", "b"])
    history = await memory_history(
        database, principal=ann, memory=await _memory(database, ann, memory_id)
    )
    actions = [entry.event.action for entry in history.entries]
    assert actions == [EventAction.update, EventAction.update, EventAction.create]
    newest, middle, created = history.entries
    assert [(c.name, c.old, c.new) for c in newest.changes] == [("tags", ["a"], ["a", "b"])]
    assert {(c.name, c.old, c.new) for c in middle.changes} == {
        ("content", "v1", "v2"),
        ("importance", 0.5, 0.9),
    }
    initial = {c.name: c.new for c in created.changes}
    assert initial == {"content": "v1", "tags": ["a"], "importance": 0.5, "expires_at": None}
    assert [e.is_current for e in history.entries] == [True, False, False]
    assert all(e.actor.kind == "person" and e.actor.name == "ann" for e in history.entries)
    assert history.older is None


async def test_every_version_is_rebuilt_across_pages(database: Database) -> None:
    ann, _, _ = await _people(database)
    memory_id = await _create(database, ann, content="c0")
    for n in range(1, 8):
        await _edit(database, ann, memory_id, content=f"c{n}")
    memory = await _memory(database, ann, memory_id)
    seen: list[str] = []
    before = None
    while True:
        page = await memory_history(database, principal=ann, memory=memory, before=before, limit=3)
        seen += [entry.state["content"] for entry in page.entries]
        if page.older is None:
            break
        before = page.older
    assert seen == [f"c{n}" for n in range(7, -1, -1)]


def test_long_content_is_a_line_diff_with_markers() -> None:
    old = "\n".join(f"line {n}" for n in range(10))
    new = old.replace("line 5", "line five")
    lines = [(line.marker, line.text) for line in line_diff(old, new)]
    assert ("-", "line 5") in lines and ("+", "line five") in lines
    assert ("-", "line 0") not in lines and (" ", "line 0") not in lines, "context is 2 lines"


async def test_revert_writes_a_new_event_and_keeps_history(database: Database) -> None:
    ann, _, _ = await _people(database)
    expiry = datetime(2030, 1, 2, 3, 4, tzinfo=UTC)
    memory_id = await _create(database, ann)
    await _edit(database, ann, memory_id, content="v2", tags=["b"], expires_at=expiry)
    version = await _edit(database, ann, memory_id, content="v3", importance=0.1)
    history = await memory_history(
        database, principal=ann, memory=await _memory(database, ann, memory_id)
    )
    created = history.entries[-1].event
    assert created.id is not None
    result = await revert_memory(
        database, principal=ann, memory_id=memory_id, event_id=created.id, expected_version=version
    )
    assert result.changed
    stored = await _memory(database, ann, memory_id)
    assert (stored.content, stored.tags, stored.importance, stored.expires_at) == (
        "v1",
        ["a"],
        0.5,
        None,
    )
    assert stored.version == version + 1
    assert await _event_count(database, memory_id) == 4
    history = await memory_history(database, principal=ann, memory=stored)
    assert history.entries[0].event.action == EventAction.update
    assert history.entries[-1].is_current, "the created version equals the current one now"
    second = history.entries[2].event
    assert second.id is not None
    await revert_memory(
        database,
        principal=ann,
        memory_id=memory_id,
        event_id=second.id,
        expected_version=stored.version,
    )
    stored = await _memory(database, ann, memory_id)
    assert (stored.content, stored.tags, stored.expires_at) == ("v2", ["b"], expiry)


async def test_stale_revert_is_a_conflict_and_changes_nothing(database: Database) -> None:
    ann, _, _ = await _people(database)
    memory_id = await _create(database, ann)
    version = await _edit(database, ann, memory_id, content="v2")
    await _edit(database, ann, memory_id, content="v3")
    first = (await _memory(database, ann, memory_id)).version
    events = await _event_count(database, memory_id)
    history = await memory_history(
        database, principal=ann, memory=await _memory(database, ann, memory_id)
    )
    event_id = history.entries[-1].event.id
    assert event_id is not None
    with pytest.raises(VersionConflict):
        await revert_memory(
            database,
            principal=ann,
            memory_id=memory_id,
            event_id=event_id,
            expected_version=version,
        )
    stored = await _memory(database, ann, memory_id)
    assert (stored.content, stored.version) == ("v3", first)
    assert await _event_count(database, memory_id) == events


async def test_revert_to_the_current_state_is_no_change(database: Database) -> None:
    ann, _, _ = await _people(database)
    memory_id = await _create(database, ann)
    version = await _edit(database, ann, memory_id, content="v2")
    version = await _edit(database, ann, memory_id, content="v1")
    history = await memory_history(
        database, principal=ann, memory=await _memory(database, ann, memory_id)
    )
    created = history.entries[-1].event.id
    assert created is not None and history.entries[-1].is_current
    result = await revert_memory(
        database, principal=ann, memory_id=memory_id, event_id=created, expected_version=version
    )
    assert not result.changed and result.memory.version == version
    assert await _event_count(database, memory_id) == 3


async def test_deleted_memory_is_not_reverted_nor_restored(database: Database) -> None:
    ann, _, _ = await _people(database)
    memory_id = await _create(database, ann)
    await _edit(database, ann, memory_id, content="v2")
    deleted = await memories.delete_memory(database, principal=ann, memory_id=memory_id)
    history = await memory_history(database, principal=ann, memory=deleted)
    created = history.entries[-1].event.id
    assert created is not None
    with pytest.raises(Conflict, match="restore it first"):
        await revert_memory(
            database,
            principal=ann,
            memory_id=memory_id,
            event_id=created,
            expected_version=deleted.version,
        )
    stored = await _memory(database, ann, memory_id)
    assert stored.is_deleted and stored.content == "v2"


async def test_another_users_history_and_revert_are_not_found(database: Database) -> None:
    ann, bob, root = await _people(database)
    memory_id = await _create(database, ann)
    version = await _edit(database, ann, memory_id, content="v2")
    memory = await _memory(database, ann, memory_id)
    assert (await memory_history(database, principal=bob, memory=memory)).entries == ()
    event_id = (await memory_history(database, principal=ann, memory=memory)).entries[-1].event.id
    assert event_id is not None
    with pytest.raises(NotFound):
        await revert_memory(
            database,
            principal=bob,
            memory_id=memory_id,
            event_id=event_id,
            expected_version=version,
        )
    other = await _create(database, bob, content="bob's")
    with pytest.raises(NotFound):
        await revert_memory(
            database, principal=bob, memory_id=other, event_id=event_id, expected_version=1
        )
    assert (await _memory(database, ann, memory_id)).content == "v2"
    result = await revert_memory(
        database, principal=root, memory_id=memory_id, event_id=event_id, expected_version=version
    )
    assert result.memory.content == "v1"
    newest = (await memory_history(database, principal=ann, memory=result.memory)).entries[0]
    assert (newest.actor.kind, newest.actor.name) == ("person", "root")


async def test_an_agents_event_names_its_token(database: Database) -> None:
    ann, _, _ = await _people(database)
    async with database.read() as session:
        ann_user = (await session.scalars(select(User).where(User.username == "ann"))).one()
    token, _ = await create_token(database, user=ann_user, name="laptop agent")
    agent = Principal.of_token(ann_user, token)
    memory_id = await _create(database, agent)
    history = await memory_history(
        database, principal=ann, memory=await _memory(database, ann, memory_id)
    )
    actor = history.entries[0].actor
    assert (actor.kind, actor.name, actor.owner) == ("agent", "laptop agent", "ann")


async def test_a_long_history_costs_one_query_a_page(database: Database, db: AsyncEngine) -> None:
    """One query for the page of events with every actor's name and the owner's, however
    many events and actors (older pages add one for the newer events' changes)."""
    ann, _, root = await _people(database)
    memory_id = await _create(database, ann, content="c0")
    for n in range(1, 60):
        await _edit(database, ann if n % 2 else root, memory_id, content=f"c{n}")
    memory = await _memory(database, ann, memory_id)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(db.sync_engine, "before_cursor_execute", count)
    try:
        first = await memory_history(database, principal=root, memory=memory)
        queries_first = len(statements)
        await memory_history(database, principal=root, memory=memory, before=first.older)
    finally:
        event.remove(db.sync_engine, "before_cursor_execute", count)
    assert len(first.entries) == 50
    assert {entry.actor.name for entry in first.entries} == {"ann", "root"}
    assert first.owner == "ann"
    assert queries_first == 1
    assert len(statements) == 1 + 2


async def test_a_page_past_the_oldest_event_still_names_the_owner(database: Database) -> None:
    """Older than the first event there are no events to read the names with: the
    owner's name is read on its own."""
    ann, _, root = await _people(database)
    memory_id = await _create(database, ann)
    memory = await _memory(database, ann, memory_id)
    (only,) = (await memory_history(database, principal=root, memory=memory)).entries
    assert only.event.id is not None
    past = await memory_history(database, principal=root, memory=memory, before=only.event.id)
    assert (past.entries, past.owner) == ((), "ann")
