"""The audit trail: one MemoryEvent per write, in the write's own transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from webapp.formats import format_time
from webapp.models import EventAction, LongTermMemory, MemoryEvent
from webapp.services.principal import Principal

AUDITED_FIELDS = (
    "content",
    "tags",
    "importance",
    "expires_at",
    "is_deleted",
    "deleted_at",
)


def _json(value: Any) -> Any:
    return format_time(value) if isinstance(value, datetime) else value


def snapshot(memory: LongTermMemory) -> dict[str, Any]:
    """The audited fields of a memory, as plain values."""
    return {name: getattr(memory, name) for name in AUDITED_FIELDS}


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{field: {"old": ..., "new": ...}} for every audited field that changed."""
    return {
        name: {"old": _json(before[name]), "new": _json(after[name])}
        for name in AUDITED_FIELDS
        if before[name] != after[name]
    }


def record_change(
    session: AsyncSession,
    *,
    memory: LongTermMemory,
    before: dict[str, Any],
    principal: Principal,
    action: EventAction,
    now: datetime,
    noting: dict[str, Any] | None = None,
) -> bool:
    """If memory differs from its snapshot `before`, count it as an edit and audit it.

    An edit bumps version and updated_at and records one event with the field diff (and
    `noting`, say the memory a merge kept); an edit that changed nothing leaves the
    memory and the trail alone. True if changed.
    """
    changes = diff(before, snapshot(memory))
    if not changes:
        return False
    changes.update(noting or {})
    memory.version += 1
    memory.updated_at = now
    record(session, memory=memory, principal=principal, action=action, changes=changes, now=now)
    return True


def _values(
    *,
    memory: LongTermMemory,
    principal: Principal,
    action: EventAction,
    changes: dict[str, Any] | None,
    now: datetime,
) -> dict[str, Any]:
    assert memory.id is not None
    return {
        "memory_id": memory.id,
        "user_id": memory.user_id,
        "actor": principal.actor,
        "actor_user_id": principal.user_id,
        "actor_token_id": principal.token_id,
        "action": action,
        "changes": changes or None,
        "created_at": now,
    }


def record(
    session: AsyncSession,
    *,
    memory: LongTermMemory,
    principal: Principal,
    action: EventAction,
    changes: dict[str, Any] | None,
    now: datetime,
) -> None:
    """Add the event to the session; it commits with the write it describes."""
    values = _values(memory=memory, principal=principal, action=action, changes=changes, now=now)
    session.add(MemoryEvent(**values))


_INSERT_EVENT = insert(MemoryEvent.__table__)  # type: ignore[attr-defined]


async def insert_now(
    session: AsyncSession,
    *,
    memory: LongTermMemory,
    principal: Principal,
    action: EventAction,
    now: datetime,
) -> None:
    """Insert the event of a write made outside the session's unit of work (a Core
    statement) at once, in the same transaction: no ORM flush for one row."""
    values = _values(memory=memory, principal=principal, action=action, changes=None, now=now)
    await session.execute(_INSERT_EVENT, values)
