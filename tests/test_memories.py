"""The memory service (services/memories.py), on SQLite and PostgreSQL.

Every assertion about a write is checked against the rows read back from the database,
not against the objects the service returned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from webapp.db import Database
from webapp.errors import InvalidInput, NotFound, VersionConflict
from webapp.formats import format_time
from webapp.models import ApiToken, LongTermMemory, MemoryCreate, MemoryEvent, MemoryUpdate, User
from webapp.services import memories
from webapp.services.principal import Principal
from webapp.services.retention import Retention
from webapp.types import utcnow

from .factories import make_user

NS = "facts"
ABSENT = 10**6
"""An id no row in these tests reaches."""


@dataclass
class People:
    """The database and three users: alice and bob (ordinary) and an admin."""

    database: Database
    alice: User
    bob: User
    admin: User

    @property
    def as_alice(self) -> Principal:
        """Alice acting in the admin app."""
        return Principal.of_user(self.alice)

    @property
    def as_bob(self) -> Principal:
        """Bob acting in the admin app."""
        return Principal.of_user(self.bob)

    @property
    def as_admin(self) -> Principal:
        """The admin acting in the admin app."""
        return Principal.of_user(self.admin)


@pytest.fixture
async def people(db: AsyncEngine) -> People:
    """alice, bob and admin, saved, on the test database."""
    database = Database(db)
    async with database.read() as session:
        alice = await make_user(session, username="alice")
        bob = await make_user(session, username="bob")
        admin = await make_user(session, username="admin", is_admin=True)
    return People(database=database, alice=alice, bob=bob, admin=admin)


def data(
    key: str = "tea", content: str = "The user likes green tea.", **fields: Any
) -> MemoryCreate:
    """A validated memory to remember in the test namespace."""
    return MemoryCreate(namespace=NS, key=key, content=content, **fields)


async def remember(p: People, principal: Principal, key: str = "tea", **fields: Any) -> int:
    """Remember a memory as principal; returns its id."""
    result = await memories.remember(p.database, principal=principal, data=data(key, **fields))
    assert result.memory.id is not None
    return result.memory.id


async def read_row(database: Database, memory_id: int) -> LongTermMemory | None:
    """The memory as stored, whoever owns it (None once purged)."""
    async with database.read() as session:
        query = select(LongTermMemory).where(LongTermMemory.id == memory_id)
        return (await session.execute(query)).scalar_one_or_none()


async def stored(database: Database, memory_id: int) -> LongTermMemory:
    """The memory as stored; it must exist."""
    memory = await read_row(database, memory_id)
    assert memory is not None, f"memory {memory_id} is not in the database"
    return memory


async def events_of(database: Database, memory_id: int) -> list[MemoryEvent]:
    """The audit trail of one memory, oldest first."""
    async with database.read() as session:
        query = (
            select(MemoryEvent).where(MemoryEvent.memory_id == memory_id).order_by(MemoryEvent.id)
        )
        return list((await session.execute(query)).scalars())


async def snapshot(database: Database, memory_id: int) -> tuple[dict[str, Any], int]:
    """Every column of the stored memory, and how many events it has."""
    memory = await stored(database, memory_id)
    columns = {name: getattr(memory, name) for name in LongTermMemory.__table__.c.keys()}  # type: ignore[attr-defined]
    return columns, len(await events_of(database, memory_id))


async def set_columns(database: Database, memory_id: int, **values: Any) -> None:
    """Write columns directly, bypassing the service (for timestamps it sets to now)."""
    async with database.write() as session:
        await session.execute(
            update(LongTermMemory).where(LongTermMemory.id == memory_id).values(**values)
        )


def is_utc(value: datetime | None) -> bool:
    """True for a timezone-aware UTC datetime."""
    return value is not None and value.tzinfo is not None and value.utcoffset() == timedelta(0)


# --- isolation ---------------------------------------------------------------------------


Operation = Callable[[Database, Principal, int], Awaitable[object]]


@dataclass
class Case:
    """One operation aimed at alice's memory (by its id, or by its owner's id)."""

    call: Operation
    aim: str  # "id" or "owner"
    deleted_first: bool = False


async def _remember_for(database: Database, principal: Principal, owner: int) -> object:
    return await memories.remember(
        database, principal=principal, data=data(content="Overwritten."), owner_id=owner
    )


async def _recall_for(database: Database, principal: Principal, owner: int) -> object:
    return await memories.recall(
        database, principal=principal, namespace=NS, key="tea", owner_id=owner
    )


async def _get(database: Database, principal: Principal, memory_id: int) -> object:
    return await memories.get_memory(
        database, principal=principal, memory_id=memory_id, include_deleted=True
    )


async def _update(database: Database, principal: Principal, memory_id: int) -> object:
    return await memories.update_memory(
        database, principal=principal, memory_id=memory_id, changes=MemoryUpdate(importance=0.9)
    )


async def _delete(database: Database, principal: Principal, memory_id: int) -> object:
    return await memories.delete_memory(database, principal=principal, memory_id=memory_id)


async def _restore(database: Database, principal: Principal, memory_id: int) -> object:
    return await memories.restore_memory(database, principal=principal, memory_id=memory_id)


CASES = {
    "remember": Case(_remember_for, "owner"),
    "recall": Case(_recall_for, "owner"),
    "get_memory": Case(_get, "id"),
    "update_memory": Case(_update, "id"),
    "delete_memory": Case(_delete, "id"),
    "restore_memory": Case(_restore, "id", deleted_first=True),
}


async def _alices_memory(p: People, case: Case) -> int:
    memory_id = await remember(p, p.as_alice)
    if case.deleted_first:
        await memories.delete_memory(p.database, principal=p.as_alice, memory_id=memory_id)
    return memory_id


@pytest.mark.parametrize("name", CASES)
async def test_another_users_memory_is_not_found_and_untouched(people: People, name: str) -> None:
    """bob aiming at alice's memory gets the NotFound of an absent target; nothing changes."""
    p, case = people, CASES[name]
    memory_id = await _alices_memory(p, case)
    before = await snapshot(p.database, memory_id)
    foreign, absent = (memory_id, memory_id + ABSENT) if case.aim == "id" else (p.alice.id, ABSENT)
    assert foreign is not None

    with pytest.raises(NotFound) as on_foreign:
        await case.call(p.database, p.as_bob, foreign)
    with pytest.raises(NotFound) as on_absent:
        await case.call(p.database, p.as_bob, absent)

    assert str(on_foreign.value).replace(str(foreign), "#") == str(on_absent.value).replace(
        str(absent), "#"
    )
    assert await snapshot(p.database, memory_id) == before


async def test_recalling_another_users_key_in_own_scope_is_not_found(people: People) -> None:
    """bob recalling alice's namespace/key finds nothing, as for a key nobody has."""
    p = people
    memory_id = await remember(p, p.as_alice)
    before = await snapshot(p.database, memory_id)

    with pytest.raises(NotFound) as on_foreign:
        await memories.recall(p.database, principal=p.as_bob, namespace=NS, key="tea")
    with pytest.raises(NotFound) as on_absent:
        await memories.recall(p.database, principal=p.as_bob, namespace=NS, key="nobody-has")

    assert str(on_foreign.value) == str(on_absent.value)
    assert await snapshot(p.database, memory_id) == before


ADMIN_EFFECTS: dict[str, Callable[[LongTermMemory], bool]] = {
    "remember": lambda m: m.content == "Overwritten." and m.version == 2,
    "recall": lambda m: m.access_count == 1,
    "get_memory": lambda m: m.version == 1 and m.access_count == 0,
    "update_memory": lambda m: m.importance == 0.9 and m.version == 2,
    "delete_memory": lambda m: m.is_deleted and m.version == 2,
    "restore_memory": lambda m: not m.is_deleted and m.deleted_at is None and m.version == 3,
}


@pytest.mark.parametrize("name", CASES)
async def test_admin_acts_on_any_users_memory(people: People, name: str) -> None:
    """An admin principal reaches alice's memory with every operation."""
    p, case = people, CASES[name]
    memory_id = await _alices_memory(p, case)
    aim = memory_id if case.aim == "id" else p.alice.id
    assert aim is not None

    result = await case.call(p.database, p.as_admin, aim)

    if isinstance(result, memories.RememberResult):
        assert not result.created
        result = result.memory
    assert isinstance(result, LongTermMemory) and result.id == memory_id
    row = await stored(p.database, memory_id)
    assert row.user_id == p.alice.id
    assert ADMIN_EFFECTS[name](row)
    if name not in ("recall", "get_memory"):
        last = (await events_of(p.database, memory_id))[-1]
        assert (last.actor, last.actor_user_id, last.user_id) == (
            "user:admin",
            p.admin.id,
            p.alice.id,
        )


async def test_purge_by_a_user_purges_only_their_own_rows(people: People) -> None:
    """bob's purge leaves alice's purgeable row; an admin's purge takes it."""
    p = people
    long_ago = utcnow() - timedelta(days=40)
    ids = {}
    for name, principal in (("alice", p.as_alice), ("bob", p.as_bob)):
        ids[name] = await remember(p, principal)
        await set_columns(p.database, ids[name], is_deleted=True, deleted_at=long_ago)

    report = await memories.purge(p.database, principal=p.as_bob, retention=Retention())

    assert (report.deleted, report.expired) == (1, 0)
    assert await read_row(p.database, ids["bob"]) is None
    assert await read_row(p.database, ids["alice"]) is not None

    report = await memories.purge(p.database, principal=p.as_admin, retention=Retention())

    assert (report.deleted, report.expired) == (1, 0)
    assert await read_row(p.database, ids["alice"]) is None
    [event] = [e for e in await events_of(p.database, ids["alice"]) if e.action == "purge"]
    assert (event.actor, event.user_id) == ("user:admin", p.alice.id)


# --- remember ----------------------------------------------------------------------------


async def test_remember_creates_with_version_1_and_a_create_event(people: People) -> None:
    """A new key is created at version 1, with a create event naming the user."""
    p = people
    result = await memories.remember(
        p.database, principal=p.as_alice, data=data(tags=["drinks"], importance=0.7)
    )

    assert result.created
    assert result.memory.id is not None
    row = await stored(p.database, result.memory.id)
    assert (row.user_id, row.namespace, row.key) == (p.alice.id, NS, "tea")
    assert (row.content, row.tags, row.importance) == ("The user likes green tea.", ["drinks"], 0.7)
    assert (row.version, row.is_deleted, row.access_count) == (1, False, 0)
    assert is_utc(row.created_at) and is_utc(row.updated_at)
    [event] = await events_of(p.database, row.id)  # type: ignore[arg-type]
    assert (event.action, event.actor, event.actor_user_id, event.actor_token_id) == (
        "create",
        "user:alice",
        p.alice.id,
        None,
    )
    assert event.user_id == p.alice.id


async def test_remember_same_key_new_content_updates_with_a_diff(people: People) -> None:
    """The same key with new content is an update to version 2 with a content diff."""
    p = people
    memory_id = await remember(p, p.as_alice, content="Green tea.")

    result = await memories.remember(
        p.database, principal=p.as_alice, data=data(content="Black tea.")
    )

    assert not result.created and result.memory.id == memory_id
    row = await stored(p.database, memory_id)
    assert (row.content, row.version) == ("Black tea.", 2)
    assert row.updated_at >= row.created_at
    created, updated = await events_of(p.database, memory_id)
    assert (created.action, updated.action) == ("create", "update")
    assert updated.changes == {"content": {"old": "Green tea.", "new": "Black tea."}}


async def test_remember_identical_values_writes_nothing(people: People) -> None:
    """Remembering exactly what is stored neither bumps the version nor records an event."""
    p = people
    memory_id = await remember(p, p.as_alice, tags=["a", "b"], importance=0.3)
    before = await snapshot(p.database, memory_id)

    result = await memories.remember(
        p.database, principal=p.as_alice, data=data(tags=["a", "b"], importance=0.3)
    )

    assert not result.created and result.memory.version == 1
    assert await snapshot(p.database, memory_id) == before


async def test_remember_revives_a_soft_deleted_key(people: People) -> None:
    """Writing a soft-deleted key revives it, recorded as a restore."""
    p = people
    memory_id = await remember(p, p.as_alice)
    await memories.delete_memory(p.database, principal=p.as_alice, memory_id=memory_id)

    result = await memories.remember(p.database, principal=p.as_alice, data=data())

    assert not result.created and result.memory.id == memory_id
    row = await stored(p.database, memory_id)
    assert (row.is_deleted, row.deleted_at, row.version) == (False, None, 3)
    actions = [e.action for e in await events_of(p.database, memory_id)]
    assert actions == ["create", "delete", "restore"]
    restore = (await events_of(p.database, memory_id))[-1]
    assert restore.changes is not None
    assert restore.changes["is_deleted"] == {"old": True, "new": False}
    assert restore.changes["deleted_at"]["new"] is None


async def test_remember_with_a_stale_version_conflicts_and_writes_nothing(
    people: People,
) -> None:
    """expected_version behind the stored one: VersionConflict with the stored memory."""
    p = people
    memory_id = await remember(p, p.as_alice, content="First.")
    await memories.remember(p.database, principal=p.as_alice, data=data(content="Second."))
    before = await snapshot(p.database, memory_id)

    with pytest.raises(VersionConflict) as conflict:
        await memories.remember(
            p.database, principal=p.as_alice, data=data(content="Third."), expected_version=1
        )

    current = conflict.value.current
    assert isinstance(current, LongTermMemory)
    assert (current.id, current.version, current.content) == (memory_id, 2, "Second.")
    assert await snapshot(p.database, memory_id) == before


async def test_remember_with_the_current_version_succeeds(people: People) -> None:
    """expected_version equal to the stored one lets the write through."""
    p = people
    memory_id = await remember(p, p.as_alice, content="First.")

    result = await memories.remember(
        p.database, principal=p.as_alice, data=data(content="Second."), expected_version=1
    )

    assert result.memory.id == memory_id
    assert (await stored(p.database, memory_id)).version == 2


async def test_remember_with_a_version_for_a_missing_key_conflicts(people: People) -> None:
    """expected_version for a key that does not exist is a conflict; nothing is created."""
    p = people

    with pytest.raises(VersionConflict) as conflict:
        await memories.remember(
            p.database, principal=p.as_alice, data=data(key="new"), expected_version=1
        )

    assert conflict.value.current is None
    async with p.database.read() as session:
        assert (await session.execute(select(LongTermMemory))).first() is None
        assert (await session.execute(select(MemoryEvent))).first() is None


async def test_remember_by_an_agent_records_the_token(people: People) -> None:
    """An agent's write names the token in the actor and in actor_token_id."""
    p = people
    async with p.database.write() as session:
        token = ApiToken(user_id=p.alice.id, name="agent", token_hash="f" * 64, created_at=utcnow())
        session.add(token)
    assert token.id is not None
    agent = Principal.of_token(p.alice, token)

    memory_id = await remember(p, agent)

    [event] = await events_of(p.database, memory_id)
    assert (event.actor, event.actor_user_id, event.actor_token_id) == (
        f"token:{token.id}:alice",
        p.alice.id,
        token.id,
    )
    assert (await stored(p.database, memory_id)).user_id == p.alice.id


async def test_concurrent_first_writes_of_one_key_create_one_row(people: People) -> None:
    """8 concurrent first writes: one creates, the others update, no error."""
    p = people

    results = await asyncio.gather(
        *(
            memories.remember(p.database, principal=p.as_alice, data=data(content=f"Take {i}."))
            for i in range(8)
        )
    )

    assert sorted(r.created for r in results) == [False] * 7 + [True]
    async with p.database.read() as session:
        rows = list((await session.execute(select(LongTermMemory))).scalars())
    assert len(rows) == 1
    assert {r.memory.id for r in results} == {rows[0].id}
    events = await events_of(p.database, rows[0].id)  # type: ignore[arg-type]
    assert [e.action for e in events].count("create") == 1
    assert rows[0].version == len(events)


# --- recall and get ----------------------------------------------------------------------


async def test_recall_counts_each_access_without_an_event(people: People) -> None:
    """Each recall adds 1 to access_count and sets last_accessed_at (UTC); no event."""
    p = people
    memory_id = await remember(p, p.as_alice)
    before_version = (await stored(p.database, memory_id)).version

    first = await memories.recall(p.database, principal=p.as_alice, namespace=NS, key="tea")
    row = await stored(p.database, memory_id)
    assert first.id == memory_id and first.access_count == 1
    assert row.access_count == 1 and is_utc(row.last_accessed_at)
    first_access = row.last_accessed_at
    assert first_access is not None

    await memories.recall(p.database, principal=p.as_alice, namespace=NS, key="tea")
    row = await stored(p.database, memory_id)
    assert row.access_count == 2
    assert is_utc(row.last_accessed_at) and row.last_accessed_at >= first_access  # type: ignore[operator]
    assert row.version == before_version
    assert [e.action for e in await events_of(p.database, memory_id)] == ["create"]


async def test_concurrent_recalls_each_count(people: People) -> None:
    """10 concurrent recalls add exactly 10: the increment happens in SQL."""
    p = people
    memory_id = await remember(p, p.as_alice)

    await asyncio.gather(
        *(
            memories.recall(p.database, principal=p.as_alice, namespace=NS, key="tea")
            for _ in range(10)
        )
    )

    assert (await stored(p.database, memory_id)).access_count == 10


async def test_recall_of_a_deleted_memory_is_not_found(people: People) -> None:
    """A soft-deleted memory cannot be recalled, and is not counted."""
    p = people
    memory_id = await remember(p, p.as_alice)
    await memories.delete_memory(p.database, principal=p.as_alice, memory_id=memory_id)

    with pytest.raises(NotFound):
        await memories.recall(p.database, principal=p.as_alice, namespace=NS, key="tea")

    assert (await stored(p.database, memory_id)).access_count == 0


async def test_recall_of_an_expired_memory_is_not_found(people: People) -> None:
    """A memory past expires_at cannot be recalled, and is not counted."""
    p = people
    memory_id = await remember(p, p.as_alice)
    await set_columns(p.database, memory_id, expires_at=utcnow() - timedelta(seconds=1))

    with pytest.raises(NotFound):
        await memories.recall(p.database, principal=p.as_alice, namespace=NS, key="tea")

    row = await stored(p.database, memory_id)
    assert (row.access_count, row.last_accessed_at) == (0, None)


async def test_get_memory_does_not_count_an_access(people: People) -> None:
    """get_memory reads the memory without touching access_count or last_accessed_at."""
    p = people
    memory_id = await remember(p, p.as_alice)

    memory = await memories.get_memory(p.database, principal=p.as_alice, memory_id=memory_id)

    assert memory.id == memory_id and memory.content == "The user likes green tea."
    row = await stored(p.database, memory_id)
    assert (row.access_count, row.last_accessed_at) == (0, None)


async def test_get_memory_hides_soft_deleted_unless_asked(people: People) -> None:
    """A soft-deleted memory is NotFound unless include_deleted=True."""
    p = people
    memory_id = await remember(p, p.as_alice)
    await memories.delete_memory(p.database, principal=p.as_alice, memory_id=memory_id)

    with pytest.raises(NotFound):
        await memories.get_memory(p.database, principal=p.as_alice, memory_id=memory_id)
    memory = await memories.get_memory(
        p.database, principal=p.as_alice, memory_id=memory_id, include_deleted=True
    )

    assert memory.id == memory_id and memory.is_deleted


# --- update ------------------------------------------------------------------------------


async def _update_as_alice(p: People, memory_id: int, **changes: Any) -> LongTermMemory:
    return await memories.update_memory(
        p.database, principal=p.as_alice, memory_id=memory_id, changes=MemoryUpdate(**changes)
    )


async def test_update_changes_each_field_with_one_event_each(people: People) -> None:
    """Each real change bumps the version once and records one update event with its diff."""
    p = people
    memory_id = await remember(p, p.as_alice, content="Green.", tags=["a"], importance=0.5)
    expiry = (utcnow() + timedelta(days=3)).replace(microsecond=0)
    steps: list[tuple[dict[str, Any], dict[str, Any]]] = [
        ({"importance": 0.9}, {"importance": {"old": 0.5, "new": 0.9}}),
        ({"tags": ["a", "b"]}, {"tags": {"old": ["a"], "new": ["a", "b"]}}),
        ({"content": "Black."}, {"content": {"old": "Green.", "new": "Black."}}),
        ({"expires_at": expiry}, {"expires_at": {"old": None, "new": format_time(expiry)}}),
    ]

    for version, (change, diff) in enumerate(steps, start=1):
        await _update_as_alice(p, memory_id, **change, version=version)
        row = await stored(p.database, memory_id)
        assert row.version == version + 1
        event = (await events_of(p.database, memory_id))[-1]
        assert (event.action, event.actor, event.changes) == ("update", "user:alice", diff)

    row = await stored(p.database, memory_id)
    assert (row.content, row.tags, row.importance, row.expires_at) == (
        "Black.",
        ["a", "b"],
        0.9,
        expiry,
    )
    assert len(await events_of(p.database, memory_id)) == 1 + len(steps)


async def test_update_with_a_stale_version_conflicts_and_writes_nothing(people: People) -> None:
    """A version behind the stored one is refused with the stored memory."""
    p = people
    memory_id = await remember(p, p.as_alice)
    await _update_as_alice(p, memory_id, importance=0.8, version=1)
    before = await snapshot(p.database, memory_id)

    with pytest.raises(VersionConflict) as conflict:
        await _update_as_alice(p, memory_id, content="Lost edit.", version=1)

    assert isinstance(conflict.value.current, LongTermMemory)
    assert conflict.value.current.version == 2
    assert await snapshot(p.database, memory_id) == before


async def test_concurrent_updates_from_one_version_let_exactly_one_through(
    people: People,
) -> None:
    """Two edits based on the same version: one wins, the other is a VersionConflict."""
    p = people
    memory_id = await remember(p, p.as_alice)

    outcomes = await asyncio.gather(
        _update_as_alice(p, memory_id, content="Edit A.", version=1),
        _update_as_alice(p, memory_id, content="Edit B.", version=1),
        return_exceptions=True,
    )

    winners = [o for o in outcomes if isinstance(o, LongTermMemory)]
    losers = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(winners) == 1 and len(losers) == 1
    assert isinstance(losers[0], VersionConflict)
    row = await stored(p.database, memory_id)
    assert (row.version, row.content) == (2, winners[0].content)
    assert [e.action for e in await events_of(p.database, memory_id)] == ["create", "update"]


async def test_update_with_expires_at_none_clears_the_expiry(people: People) -> None:
    """An explicit expires_at=None removes the expiry."""
    p = people
    expiry = utcnow() + timedelta(days=1)
    memory_id = await remember(p, p.as_alice, expires_at=expiry)

    await _update_as_alice(p, memory_id, expires_at=None)

    row = await stored(p.database, memory_id)
    assert (row.expires_at, row.version) == (None, 2)
    event = (await events_of(p.database, memory_id))[-1]
    assert event.changes == {"expires_at": {"old": format_time(expiry), "new": None}}


async def test_update_with_content_none_is_invalid(people: People) -> None:
    """content=None is refused; nothing is written."""
    p = people
    memory_id = await remember(p, p.as_alice)
    before = await snapshot(p.database, memory_id)

    with pytest.raises(InvalidInput):
        await _update_as_alice(p, memory_id, content=None)

    assert await snapshot(p.database, memory_id) == before


async def test_update_of_a_deleted_memory_is_not_found(people: People) -> None:
    """A soft-deleted memory cannot be edited."""
    p = people
    memory_id = await remember(p, p.as_alice)
    await memories.delete_memory(p.database, principal=p.as_alice, memory_id=memory_id)
    before = await snapshot(p.database, memory_id)

    with pytest.raises(NotFound):
        await _update_as_alice(p, memory_id, importance=0.9)

    assert await snapshot(p.database, memory_id) == before


async def test_update_without_a_change_writes_nothing(people: People) -> None:
    """Setting fields to their current values records no event and keeps the version."""
    p = people
    memory_id = await remember(p, p.as_alice, importance=0.4, tags=["x"])
    before = await snapshot(p.database, memory_id)

    memory = await _update_as_alice(p, memory_id, importance=0.4, tags=["x"], version=1)

    assert memory.version == 1
    assert await snapshot(p.database, memory_id) == before


# --- delete and restore ------------------------------------------------------------------


async def test_delete_and_restore_flip_the_flag_with_events(people: People) -> None:
    """delete sets is_deleted/deleted_at, restore clears them; each bumps the version."""
    p = people
    memory_id = await remember(p, p.as_alice)

    await memories.delete_memory(
        p.database, principal=p.as_alice, memory_id=memory_id, expected_version=1
    )
    row = await stored(p.database, memory_id)
    assert row.is_deleted and is_utc(row.deleted_at) and row.version == 2
    deleted_event = (await events_of(p.database, memory_id))[-1]
    assert deleted_event.action == "delete"
    assert deleted_event.changes is not None
    assert deleted_event.changes["is_deleted"] == {"old": False, "new": True}
    assert deleted_event.changes["deleted_at"] == {"old": None, "new": format_time(row.deleted_at)}

    await memories.restore_memory(
        p.database, principal=p.as_alice, memory_id=memory_id, expected_version=2
    )
    row = await stored(p.database, memory_id)
    assert (row.is_deleted, row.deleted_at, row.version) == (False, None, 3)
    actions = [e.action for e in await events_of(p.database, memory_id)]
    assert actions == ["create", "delete", "restore"]


async def test_delete_twice_is_not_found(people: People) -> None:
    """Deleting a deleted memory is NotFound and changes nothing."""
    p = people
    memory_id = await remember(p, p.as_alice)
    await memories.delete_memory(p.database, principal=p.as_alice, memory_id=memory_id)
    before = await snapshot(p.database, memory_id)

    with pytest.raises(NotFound):
        await memories.delete_memory(p.database, principal=p.as_alice, memory_id=memory_id)

    assert await snapshot(p.database, memory_id) == before


async def test_restore_of_an_active_memory_is_not_found(people: People) -> None:
    """Restoring a memory that is not deleted is NotFound and changes nothing."""
    p = people
    memory_id = await remember(p, p.as_alice)
    before = await snapshot(p.database, memory_id)

    with pytest.raises(NotFound):
        await memories.restore_memory(p.database, principal=p.as_alice, memory_id=memory_id)

    assert await snapshot(p.database, memory_id) == before


async def test_delete_with_a_stale_version_conflicts(people: People) -> None:
    """delete checks expected_version like any edit."""
    p = people
    memory_id = await remember(p, p.as_alice)
    await _update_as_alice(p, memory_id, importance=0.9)
    before = await snapshot(p.database, memory_id)

    with pytest.raises(VersionConflict):
        await memories.delete_memory(
            p.database, principal=p.as_alice, memory_id=memory_id, expected_version=1
        )

    assert await snapshot(p.database, memory_id) == before


# --- purge -------------------------------------------------------------------------------


async def _purge_fixture(p: People) -> dict[str, int]:
    """Rows deleted 40 and 10 days ago, expired 10 and 2 days ago, and two active ones."""
    now = utcnow()
    ids = {name: await remember(p, p.as_alice, key=name) for name in PURGE_ROWS}
    for name, days in (("deleted_40", 40), ("deleted_10", 10)):
        await set_columns(
            p.database, ids[name], is_deleted=True, deleted_at=now - timedelta(days=days)
        )
    for name, days in (("expired_10", 10), ("expired_2", 2)):
        await set_columns(p.database, ids[name], expires_at=now - timedelta(days=days))
    await set_columns(p.database, ids["expiring_later"], expires_at=now + timedelta(days=5))
    return ids


PURGE_ROWS = ("deleted_40", "deleted_10", "expired_10", "expired_2", "active", "expiring_later")


async def _remaining(p: People) -> set[int]:
    async with p.database.read() as session:
        return set((await session.execute(select(LongTermMemory.id))).scalars())


async def test_purge_dry_run_counts_and_removes_nothing(people: People) -> None:
    """With the defaults (30, 7) the dry run reports one of each and removes nothing."""
    p = people
    ids = await _purge_fixture(p)

    report = await memories.purge(
        p.database, principal=p.as_admin, retention=Retention(), dry_run=True
    )

    assert (report.deleted, report.expired, report.dry_run) == (1, 1, True)
    assert await _remaining(p) == set(ids.values())
    for memory_id in ids.values():
        assert "purge" not in [e.action for e in await events_of(p.database, memory_id)]


async def test_purge_removes_exactly_the_rows_past_their_period(people: People) -> None:
    """The real run reports the dry run's counts and removes those rows, with purge events."""
    p = people
    ids = await _purge_fixture(p)

    report = await memories.purge(p.database, principal=p.as_alice, retention=Retention())

    assert (report.deleted, report.expired, report.dry_run) == (1, 1, False)
    gone = {ids["deleted_40"], ids["expired_10"]}
    assert await _remaining(p) == set(ids.values()) - gone
    for name, label in (("deleted_40", "deleted"), ("expired_10", "expired")):
        event = (await events_of(p.database, ids[name]))[-1]
        assert (event.action, event.memory_id, event.user_id, event.actor) == (
            "purge",
            ids[name],
            p.alice.id,
            "user:alice",
        )
        assert event.changes == {"state": {"old": label, "new": None}}
        assert is_utc(event.created_at)


async def test_purge_with_zero_retention_takes_every_soft_deleted_row(people: People) -> None:
    """retention_days=0 purges every soft-deleted row, even one deleted just now."""
    p = people
    ids = await _purge_fixture(p)
    fresh = await remember(p, p.as_alice, key="just-deleted")
    await memories.delete_memory(p.database, principal=p.as_alice, memory_id=fresh)

    report = await memories.purge(
        p.database, principal=p.as_alice, retention=Retention(deleted_days=0)
    )

    assert (report.deleted, report.expired) == (3, 1)
    gone = {ids["deleted_40"], ids["deleted_10"], ids["expired_10"], fresh}
    assert await _remaining(p) == set(ids.values()) - gone


@pytest.mark.parametrize(
    "periods", [{"deleted_days": -1}, {"expired_grace_days": -1}], ids=["retention", "grace"]
)
async def test_purge_with_negative_days_is_invalid(people: People, periods: dict[str, int]) -> None:
    """Negative periods are refused before anything is removed."""
    p = people
    ids = await _purge_fixture(p)

    with pytest.raises(InvalidInput):
        await memories.purge(p.database, principal=p.as_admin, retention=Retention(**periods))

    assert await _remaining(p) == set(ids.values())


async def test_ids_are_not_reused_after_a_purge(people: People) -> None:
    """After purging the newest row, the next memory gets a larger id."""
    p = people
    await remember(p, p.as_alice, key="older")
    newest = await remember(p, p.as_alice, key="newest")
    await memories.delete_memory(p.database, principal=p.as_alice, memory_id=newest)
    report = await memories.purge(
        p.database, principal=p.as_alice, retention=Retention(deleted_days=0)
    )
    assert report.deleted == 1 and await read_row(p.database, newest) is None

    after = await remember(p, p.as_alice, key="after")

    assert after > newest
    assert [e.action for e in await events_of(p.database, after)] == ["create"]
