"""Memories: remember, recall, get, update, soft delete, restore and purge.

Every function takes the acting Principal and is scoped by it: another user's memory
behaves exactly as an absent one (NotFound). Each write runs in one write transaction
(BEGIN IMMEDIATE on SQLite, the row locked FOR UPDATE on PostgreSQL) and records its
MemoryEvent in that same transaction. Edits that carry a version are refused with a
VersionConflict when the memory has moved on, so nothing is silently overwritten.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, false, func, insert, select, true, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import ReturningUpdate

from webapp.db import Database
from webapp.errors import Conflict, InvalidInput, NotFound, VersionConflict
from webapp.models import EventAction, LongTermMemory, MemoryCreate, MemoryEvent, MemoryUpdate
from webapp.services import events
from webapp.services.filters import state_condition
from webapp.services.principal import Principal
from webapp.services.retention import Retention
from webapp.types import utcnow

_table = LongTermMemory.__table__  # type: ignore[attr-defined]
_c = _table.c


@dataclass
class RememberResult:
    """The memory after an upsert, and whether it was created (201) or not (200)."""

    memory: LongTermMemory
    created: bool


@dataclass
class PurgeReport:
    """How many rows a purge removed (or, for a dry run, would remove)."""

    deleted: int
    expired: int
    dry_run: bool


def _not_found(memory_id: int | None = None) -> NotFound:
    return NotFound("memory not found" if memory_id is None else f"memory {memory_id} not found")


async def _locked(session: AsyncSession, *conditions: ColumnElement[bool]) -> LongTermMemory | None:
    """The one memory matching conditions, locked for this transaction on PostgreSQL.

    FOR NO KEY UPDATE, not FOR UPDATE: edits still wait for each other, but the foreign
    key checks of rows that point at the memory (its vector, written by the embedder)
    do not wait for the edit. With FOR UPDATE an upsert and the embedder deadlocked
    under load: the upsert held the memory and waited to queue it for a new vector,
    while the embedder held that queue entry and waited to check the memory's key."""
    query = select(LongTermMemory).where(*conditions).with_for_update(key_share=True)
    return (await session.execute(query)).scalar_one_or_none()


def _check_version(memory: LongTermMemory, expected: int | None) -> None:
    if expected is not None and memory.version != expected:
        raise VersionConflict(
            f"memory {memory.id} was changed by someone else (now at version {memory.version}, "
            f"your edit was based on version {expected})",
            current=memory,
        )


async def remember(
    db: Database,
    *,
    principal: Principal,
    data: MemoryCreate,
    owner_id: int | None = None,
    expected_version: int | None = None,
) -> RememberResult:
    """Upsert by (owner, namespace, key); writing a soft-deleted key revives it.

    Concurrent first writes of one key: one creates it, the others update it.
    """
    owner = principal.owner_for(owner_id)
    now = utcnow()
    by_key = (_c.user_id == owner, _c.namespace == data.namespace, _c.key == data.key)
    async with db.write() as session:
        if expected_version is None:
            # One statement creates it, or finds out that it exists (a concurrent first
            # write included), with no savepoint and no read first.
            created = await _insert_unless_exists(session, db.dialect, data, owner, now)
            if created is not None:
                await events.insert_now(
                    session, memory=created, principal=principal, action=EventAction.create, now=now
                )
                return RememberResult(memory=created, created=True)
        memory = await _locked(session, *by_key)
        if memory is None:
            if expected_version is not None:
                raise VersionConflict(
                    f"{data.namespace}/{data.key} does not exist; omit version to create it",
                    current=None,
                )
            raise Conflict(f"{data.namespace}/{data.key} was purged while being written; retry")

        _check_version(memory, expected_version)
        before = events.snapshot(memory)
        revived = memory.is_deleted
        for name in ("content", "tags", "importance", "expires_at"):
            setattr(memory, name, getattr(data, name))
        memory.is_deleted, memory.deleted_at = False, None
        events.record_change(
            session,
            memory=memory,
            before=before,
            principal=principal,
            action=EventAction.restore if revived else EventAction.update,
            now=now,
        )
        return RememberResult(memory=memory, created=False)


_CREATE_UNLESS_EXISTS = {
    dialect: insert_for(_table)
    .on_conflict_do_nothing(index_elements=[_c.user_id, _c.namespace, _c.key])
    .returning(*_c)
    for dialect, insert_for in (("sqlite", sqlite_insert), ("postgresql", postgresql_insert))
}
"""Built once: a Core statement with its values given at execution is compiled once and
then found in the statement cache, where building .values() for each call and going
through the ORM's bulk insert costs about half a millisecond an upsert."""


async def _insert_unless_exists(
    session: AsyncSession, dialect: str, data: MemoryCreate, owner: int, now: datetime
) -> LongTermMemory | None:
    """INSERT ... ON CONFLICT (user, namespace, key) DO NOTHING RETURNING the new memory,
    or None when that key exists."""
    # The other columns take the table's defaults (version 1, never read, not deleted).
    values = {**data.model_dump(), "user_id": owner, "created_at": now, "updated_at": now}
    row = (await session.execute(_CREATE_UNLESS_EXISTS[dialect], values)).first()
    return None if row is None else LongTermMemory(**row._mapping)


async def recall(
    db: Database,
    *,
    principal: Principal,
    namespace: str,
    key: str,
    owner_id: int | None = None,
) -> LongTermMemory:
    """The active memory at namespace/key, counting the access in SQL (not an event)."""
    owner = principal.owner_for(owner_id)
    statement = _counting_access(_c.user_id == owner, _c.namespace == namespace, _c.key == key)
    async with db.write(one_statement=True) as session:
        memory = (await session.execute(statement)).scalar_one_or_none()
    if memory is None:
        raise _not_found()
    return memory


async def count_access(db: Database, *, ids: list[int]) -> dict[int, LongTermMemory]:
    """Count one access to each of ids that is still active, and return those memories by
    id as they are after it (for search results and context blocks)."""
    if not ids:
        return {}
    async with db.write(one_statement=True) as session:
        memories = (await session.execute(_counting_access(_c.id.in_(ids)))).scalars().all()
    return {memory.id: memory for memory in memories if memory.id is not None}


def _counting_access(*conditions: ColumnElement[bool]) -> ReturningUpdate[LongTermMemory]:
    """UPDATE ... RETURNING the active memories matching conditions, each read once more:
    what every read that counts (recall, search, context) does, in SQL rather than as a
    read-modify-write, and without an event."""
    now = utcnow()
    return (
        update(LongTermMemory)
        .where(*conditions, state_condition("active", now=now))
        .values(access_count=_c.access_count + 1, last_accessed_at=now)
        .returning(LongTermMemory)
        .execution_options(synchronize_session=False)
    )


async def get_memory(
    db: Database, *, principal: Principal, memory_id: int, include_deleted: bool = False
) -> LongTermMemory:
    """One memory by id (not an access); a soft-deleted one only with include_deleted."""
    query = select(LongTermMemory).where(_c.id == memory_id, principal.visible())
    if not include_deleted:
        query = query.where(_c.is_deleted.is_(false()))
    async with db.read() as session:
        memory = (await session.execute(query)).scalar_one_or_none()
    if memory is None:
        raise _not_found(memory_id)
    return memory


async def update_memory(
    db: Database, *, principal: Principal, memory_id: int, changes: MemoryUpdate
) -> LongTermMemory:
    """Edit content, tags, importance or expiry (None clears the expiry); checks version."""
    requested = changes.model_dump(exclude_unset=True, exclude={"version"})
    for name in ("content", "tags", "importance"):
        if name in requested and requested[name] is None:
            raise InvalidInput(f"{name} cannot be null")

    def assign(memory: LongTermMemory) -> None:
        for name, value in requested.items():
            setattr(memory, name, value)

    return await change_memory(
        db,
        principal=principal,
        memory_id=memory_id,
        expected_version=changes.version,
        change=assign,
    )


async def change_memory(
    db: Database,
    *,
    principal: Principal,
    memory_id: int,
    expected_version: int | None,
    change: Callable[[LongTermMemory], None],
) -> LongTermMemory:
    """Apply change to a live memory, locked, in one write transaction with its `update`
    event; checks version. change may raise InvalidInput: then nothing is written.

    Every edit of one memory goes through here (the API's PATCH, the pages' edits, tags
    and importance in services.edits), so each is checked and recorded the same way.
    """
    now = utcnow()
    async with db.write() as session:
        memory = await _locked(
            session, _c.id == memory_id, principal.visible(), _c.is_deleted.is_(false())
        )
        if memory is None:
            raise _not_found(memory_id)
        _check_version(memory, expected_version)
        before = events.snapshot(memory)
        change(memory)
        events.record_change(
            session,
            memory=memory,
            before=before,
            principal=principal,
            action=EventAction.update,
            now=now,
        )
        return memory


async def delete_memory(
    db: Database, *, principal: Principal, memory_id: int, expected_version: int | None = None
) -> LongTermMemory:
    """Soft-delete (undoable until purged); deleting a deleted memory is NotFound."""
    return await _set_deleted(
        db, principal=principal, memory_id=memory_id, deleted=True, expected=expected_version
    )


async def restore_memory(
    db: Database, *, principal: Principal, memory_id: int, expected_version: int | None = None
) -> LongTermMemory:
    """Undo a soft delete; restoring a memory that is not deleted is NotFound."""
    return await _set_deleted(
        db, principal=principal, memory_id=memory_id, deleted=False, expected=expected_version
    )


async def delete_memory_at(
    db: Database, *, principal: Principal, namespace: str, key: str, owner_id: int | None = None
) -> LongTermMemory:
    """Soft-delete the memory at namespace/key (an agent's `forget`), undoable until purged;
    NotFound if there is none or it is deleted already."""
    owner = principal.owner_for(owner_id)
    return await _set_deleted(
        db,
        principal=principal,
        memory_id=None,
        deleted=True,
        expected=None,
        where=(_c.user_id == owner, _c.namespace == namespace, _c.key == key),
    )


async def _set_deleted(
    db: Database,
    *,
    principal: Principal,
    memory_id: int | None,
    deleted: bool,
    expected: int | None,
    where: tuple[ColumnElement[bool], ...] = (),
) -> LongTermMemory:
    """Soft-delete or restore the memory with memory_id (or, without one, the one where
    finds), recording the event."""
    now = utcnow()
    currently = _c.is_deleted.is_(false()) if deleted else _c.is_deleted.is_(true())
    if memory_id is not None:
        where = (*where, _c.id == memory_id)
    async with db.write() as session:
        memory = await _locked(session, *where, principal.visible(), currently)
        if memory is None:
            raise _not_found(memory_id)
        _check_version(memory, expected)
        before = events.snapshot(memory)
        memory.is_deleted = deleted
        memory.deleted_at = now if deleted else None
        events.record_change(
            session,
            memory=memory,
            before=before,
            principal=principal,
            action=EventAction.delete if deleted else EventAction.restore,
            now=now,
        )
        return memory


async def purge_deleted(
    db: Database, *, principal: Principal, user_id: int | None = None, dry_run: bool = False
) -> int:
    """Trash's 'purge now' (admins): hard-delete every soft-deleted memory in scope at once,
    whatever its age, leaving a `purge` event for each. The dry run counts them."""
    if not principal.is_admin:
        raise NotFound("nothing to purge")
    conditions = [_c.is_deleted.is_(true()), principal.visible()]
    if user_id is not None:
        conditions.append(_c.user_id == user_id)
    now = utcnow()
    async with db.write() as session:
        if dry_run:
            query = select(func.count()).select_from(_table).where(*conditions)
            return int((await session.execute(query)).scalar_one())
        removed = (
            await session.execute(delete(_table).where(*conditions).returning(_c.id, _c.user_id))
        ).all()
        await _record_purges(session, principal, removed, "deleted", now)
    return len(removed)


async def _record_purges(
    session: AsyncSession,
    principal: Principal,
    removed: Sequence[Any],
    label: str,
    now: datetime,
) -> None:
    """One `purge` event per removed (id, user_id) row."""
    rows: list[dict[str, Any]] = [
        {
            "memory_id": memory_id,
            "user_id": user_id,
            "actor": principal.actor,
            "actor_user_id": principal.user_id,
            "actor_token_id": principal.token_id,
            "action": EventAction.purge.value,
            "changes": {"state": {"old": label, "new": None}},
            "created_at": now,
        }
        for memory_id, user_id in removed
    ]
    if rows:
        await session.execute(insert(MemoryEvent.__table__), rows)  # type: ignore[attr-defined]


async def purge(
    db: Database,
    *,
    principal: Principal,
    retention: Retention,
    dry_run: bool = False,
) -> PurgeReport:
    """Hard-delete soft-deleted rows past retention and rows expired past the grace period.

    Each purged row leaves a `purge` event. The dry run counts with the same conditions
    in the same kind of transaction, so it reports what the real run would remove.
    """
    if retention.deleted_days < 0 or retention.expired_grace_days < 0:
        raise InvalidInput("retention and grace periods must be 0 days or more")
    now = utcnow()
    deleted, expired = retention.purgeable(now)
    visible = principal.visible()
    async with db.write() as session:
        counts = {}
        for label, condition in (("deleted", deleted), ("expired", expired)):
            if dry_run:
                query = select(func.count()).select_from(_table).where(condition, visible)
                counts[label] = int((await session.execute(query)).scalar_one())
                continue
            removed = (
                await session.execute(
                    delete(_table).where(condition, visible).returning(_c.id, _c.user_id)
                )
            ).all()
            await _record_purges(session, principal, removed, label, now)
            counts[label] = len(removed)
    return PurgeReport(deleted=counts["deleted"], expired=counts["expired"], dry_run=dry_run)
