"""Bulk actions on chosen memories or on every memory matching a filter: preview, then all
or nothing.

A preview counts the selection, shows a sample and a fingerprint of the set (a hash of
every selected row's id and version). Applying reads the rows and prepares every new
value and event in a read transaction (no write lock), then re-reads only the ids and
versions inside the write transaction (rows locked on PostgreSQL, the write lock taken
up front on SQLite) and refuses with StalePreview when the fingerprint differs: rows
changed, added or removed since the preview are never acted on silently.
One missing id (or another user's), one bad value or one row that cannot take the
change raises before anything is written.

The writes are Core statements, not ORM objects: the new values are worked out in Python
with the rules a single edit uses (services/edits.py), then written by
the ids: one UPDATE for an action that sets the same value on every row (the ids as one
bound JSON array or PostgreSQL array), or one executemany for tags (each row's own
list), and the events as one multi-row INSERT per 1,000. Every
memory changed gets its own event with its field diff, as a single edit would. The
full-text and tag indexes follow by themselves (triggers on SQLite, generated columns
on PostgreSQL).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Integer,
    Select,
    any_,
    bindparam,
    func,
    insert,
    literal_column,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from webapp.db import Database
from webapp.errors import Conflict, InvalidInput, NotFound
from webapp.formats import format_time
from webapp.models import BrowseQuery, EventAction, LongTermMemory, MemoryEvent
from webapp.services.browse import filter_conditions
from webapp.services.edits import checked_importance, with_tags, without_tags
from webapp.services.plan import Plan
from webapp.services.principal import Principal
from webapp.services.users import usernames_in
from webapp.types import utcnow
from webapp.validation import ensure_utc

SAMPLE_SIZE = 10
BATCH = 1_000
"""Ids per UPDATE ... WHERE id IN (...) and rows per INSERT of events."""

_table = LongTermMemory.__table__  # type: ignore[attr-defined]
_c = _table.c
_events = MemoryEvent.__table__  # type: ignore[attr-defined]
_READ = (
    _c.id,
    _c.user_id,
    _c.version,
    _c.tags,
    _c.importance,
    _c.expires_at,
    _c.is_deleted,
    _c.deleted_at,
)


class BulkAction(StrEnum):
    """What a bulk action does to each selected memory."""

    delete = "delete"
    restore = "restore"
    add_tag = "add_tag"
    remove_tag = "remove_tag"
    set_importance = "set_importance"
    set_expiry = "set_expiry"


class StalePreview(Conflict):
    """The selection changed since its preview; nothing was changed."""


@dataclass
class Selection:
    """Explicit ids, or every memory matching a filter, or the memories one bulk delete
    deleted (its deletion time: what an undo restores)."""

    ids: Sequence[int] = ()
    query: BrowseQuery | None = None
    deleted_at: datetime | None = None


@dataclass
class BulkResult:
    """How many selected memories changed, how many already were as asked, and when."""

    changed: int
    unchanged: int
    at: datetime


@dataclass
class SampleRow:
    """One memory of a preview's sample, as the preview page lists it."""

    id: int
    key: str
    namespace: str
    owner: str


@dataclass
class BulkPreview:
    """What a bulk action would touch: how many memories, a few of them, the fingerprint."""

    count: int
    sample: list[SampleRow]
    fingerprint: str


def checked_value(action: BulkAction, value: Any) -> Any:
    """The action's value, validated with the same rules as a single edit."""
    if action in (BulkAction.add_tag, BulkAction.remove_tag):
        if not isinstance(value, str) or not value.strip():
            raise InvalidInput("tag: enter a tag")
        try:
            return with_tags((), [value])[0]
        except InvalidInput as exc:
            raise InvalidInput(f"tag: {exc}") from None
    if action is BulkAction.set_importance:
        try:
            return checked_importance(value)
        except InvalidInput as exc:
            raise InvalidInput(f"importance: {exc}") from None
    if action is BulkAction.set_expiry:
        if value is not None and not isinstance(value, datetime):
            raise InvalidInput("expiry: enter a date and time, or never")
        try:
            return ensure_utc(value)
        except ValueError as exc:  # past year 9999 in UTC, say
            raise InvalidInput(f"expiry: {exc}") from None
    return None


def _conditions(
    db: Database, principal: Principal, selection: Selection
) -> list[ColumnElement[bool]]:
    if selection.query is not None:
        return filter_conditions(
            principal, selection.query, utcnow(), plan=Plan(db.dialect, db.search_language)
        )
    if selection.deleted_at is not None:
        return [principal.visible(), _c.is_deleted == true(), _c.deleted_at == selection.deleted_at]
    if not selection.ids:
        raise InvalidInput("select at least one memory")
    return [principal.visible(), _c.id.in_(sorted(set(selection.ids)))]


def fingerprint(pairs: Sequence[tuple[int, int]]) -> str:
    """A short hash of (id, version) pairs in id order: it changes when a row is added,
    removed or changed (every change bumps the version)."""
    digest = hashlib.sha256()
    for memory_id, version in pairs:
        digest.update(f"{memory_id}:{version};".encode())
    return f"{len(pairs)}-{digest.hexdigest()[:24]}"


def _check_ids(selection: Selection, found: Sequence[int]) -> None:
    if selection.query is None and selection.deleted_at is None:
        missing = set(selection.ids) - set(found)
        if missing:
            raise NotFound(f"memories not found: {', '.join(map(str, sorted(missing)))}")


async def preview(db: Database, *, principal: Principal, selection: Selection) -> BulkPreview:
    """How many memories a bulk action on selection would touch, a sample and the
    fingerprint that apply checks; NotFound if a chosen id is not one of the principal's."""
    conditions = _conditions(db, principal, selection)
    async with db.read() as session:
        pairs = [
            (row.id, row.version)
            for row in await session.execute(
                select(_c.id, _c.version).where(*conditions).order_by(_c.id)
            )
        ]
        _check_ids(selection, [memory_id for memory_id, _ in pairs])
        first = [memory_id for memory_id, _ in pairs[:SAMPLE_SIZE]]
        sample_rows = (
            await session.execute(
                select(_c.id, _c.key, _c.namespace, _c.user_id)
                .where(_c.id.in_(first))
                .order_by(_c.id)
            )
        ).all()
        owners = await usernames_in(session, (row.user_id for row in sample_rows))
    sample = [
        SampleRow(row.id, row.key, row.namespace, owners.get(row.user_id, "?"))
        for row in sample_rows
    ]
    return BulkPreview(count=len(pairs), sample=sample, fingerprint=fingerprint(pairs))


def _new_values(row: Any, action: BulkAction, value: Any, now: datetime) -> dict[str, Any]:
    """The audited fields of row that action changes, with their new values."""
    if action is BulkAction.delete:
        return {} if row.is_deleted else {"is_deleted": True, "deleted_at": now}
    if action is BulkAction.restore:
        return {"is_deleted": False, "deleted_at": None} if row.is_deleted else {}
    if action is BulkAction.add_tag:
        try:
            return {"tags": with_tags(row.tags, [value])}
        except InvalidInput as exc:
            raise InvalidInput(f"memory {row.id}: {exc}") from None
    if action is BulkAction.remove_tag:
        return {"tags": without_tags(row.tags, [value])}
    if action is BulkAction.set_importance:
        return {"importance": value}
    return {"expires_at": value}


def _json(value: Any) -> Any:
    return format_time(value) if isinstance(value, datetime) else value


def _diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The event's changes, as services/events.py writes them: {field: {old, new}}."""
    return {
        name: {"old": _json(before[name]), "new": _json(new)}
        for name, new in after.items()
        if before[name] != new
    }


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), BATCH):
        yield items[start : start + BATCH]


def _ids_in(ids: list[int], dialect: str) -> ColumnElement[bool]:
    """`id IN (ids)` as one bound value, so one statement updates them all: a JSON array
    read by json_each on SQLite, an array on PostgreSQL."""
    if dialect == "sqlite":
        array = func.json_each(json.dumps(ids))
        listed: Select[Any] = select(literal_column("value")).select_from(array)
        return _c.id.in_(listed.scalar_subquery())
    return _c.id == any_(bindparam("bulk_ids", ids, type_=ARRAY(Integer)))


async def _write(
    session: AsyncSession,
    dialect: str,
    action: BulkAction,
    changes: list[tuple[Any, dict[str, Any], dict[str, Any]]],
    principal: Principal,
    now: datetime,
) -> None:
    """Write the changed rows (version + 1, updated_at now) and one event each."""
    if action is BulkAction.add_tag or action is BulkAction.remove_tag:
        statement = (
            update(_table)
            .where(_c.id == bindparam("b_id"))
            .values(tags=bindparam("b_tags"), version=_c.version + 1, updated_at=now)
        )
        for chunk in _chunks(changes):
            params = [{"b_id": row.id, "b_tags": new["tags"]} for row, new, _ in chunk]
            await session.execute(statement, params)
    elif changes:
        values = changes[0][1]  # the same new values for every row
        await session.execute(
            update(_table)
            .where(_ids_in([row.id for row, _, _ in changes], dialect))
            .values(**values, version=_c.version + 1, updated_at=now)
        )
    kind = {BulkAction.delete: EventAction.delete, BulkAction.restore: EventAction.restore}.get(
        action, EventAction.update
    )
    common = {
        "actor": principal.actor,
        "actor_user_id": principal.user_id,
        "actor_token_id": principal.token_id,
        "action": kind,
        "created_at": now,
    }
    for chunk in _chunks(changes):
        rows = [
            {"memory_id": row.id, "user_id": row.user_id, "changes": diff, **common}
            for row, _, diff in chunk
        ]
        await session.execute(insert(_events), rows)


def _changes(
    rows: Sequence[Any], action: BulkAction, value: Any, now: datetime
) -> list[tuple[Any, dict[str, Any], dict[str, Any]]]:
    """(row, new values, event diff) for every row that action changes."""
    changes: list[tuple[Any, dict[str, Any], dict[str, Any]]] = []
    for row in rows:
        new = _new_values(row, action, value, now)
        diff = _diff({name: getattr(row, name) for name in new}, new)
        if diff:
            changes.append((row, new, diff))
    return changes


def _stale() -> StalePreview:
    return StalePreview(
        "These memories changed since the preview (rows were edited, added or "
        "removed). Nothing was changed: check the new preview and confirm again."
    )


async def apply(
    db: Database,
    *,
    principal: Principal,
    selection: Selection,
    action: BulkAction,
    value: Any = None,
    expected: str | None = None,
) -> BulkResult:
    """Run action on every selected memory in one transaction, or on none of them.

    expected is the fingerprint of the previewed set: if the selection is not that set
    any more, StalePreview and nothing changes.

    The rows are read and the new values and events worked out in a read transaction
    (a snapshot; no write lock). The write transaction then only re-reads the
    selection's ids and versions: when they still match the snapshot, it writes the
    prepared rows and events; when they do not (a concurrent edit in between), the
    action is worked out again inside the write transaction, or refused as stale when
    a preview was confirmed. So the write lock is held for one cheap query and the
    writes, not for the reading and the Python work.
    """
    checked = checked_value(action, value)
    conditions = _conditions(db, principal, selection)
    query = select(*_READ).where(*conditions).order_by(_c.id)
    versions = select(_c.id, _c.version).where(*conditions).order_by(_c.id)
    if db.dialect == "postgresql":
        query = query.with_for_update()
        versions = versions.with_for_update()
    now = utcnow()
    async with db.read() as session:
        rows = (await session.execute(select(*_READ).where(*conditions).order_by(_c.id))).all()
    _check_ids(selection, [row.id for row in rows])
    seen = fingerprint([(r.id, r.version) for r in rows])
    if expected is not None and seen != expected:
        raise _stale()
    changes = _changes(rows, action, checked, now)
    async with db.write() as session:
        current = [(r.id, r.version) for r in await session.execute(versions)]
        if fingerprint(current) != seen:
            if expected is not None:
                raise _stale()
            rows = (await session.execute(query)).all()
            _check_ids(selection, [row.id for row in rows])
            changes = _changes(rows, action, checked, now)
        await _write(session, db.dialect, action, changes, principal, now)
    return BulkResult(changed=len(changes), unchanged=len(rows) - len(changes), at=now)
