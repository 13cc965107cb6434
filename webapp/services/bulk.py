"""Bulk actions on chosen memories or on every memory matching a filter: all or nothing.

The whole action runs in one write transaction with the rows locked: one missing id
(or another user's), one stale version or one bad value raises before anything is
written. Every memory it changes gets its own event, as a single edit would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, select

from webapp.db import Database
from webapp.errors import InvalidInput, NotFound, VersionConflict
from webapp.models import BrowseQuery, EventAction, LongTermMemory
from webapp.services import events
from webapp.services.browse import filter_conditions
from webapp.services.edits import checked_importance, with_tags, without_tags
from webapp.services.plan import Plan
from webapp.services.principal import Principal
from webapp.types import utcnow
from webapp.validation import ensure_utc

SAMPLE_SIZE = 5

_c = LongTermMemory.__table__.c  # type: ignore[attr-defined]


class BulkAction(StrEnum):
    """What a bulk action does to each selected memory."""

    delete = "delete"
    restore = "restore"
    add_tag = "add_tag"
    remove_tag = "remove_tag"
    set_importance = "set_importance"
    set_expiry = "set_expiry"


@dataclass
class Selection:
    """Either explicit ids (optionally with the version each was seen at) or a filter."""

    ids: Sequence[int] = ()
    versions: Mapping[int, int] = field(default_factory=dict)
    query: BrowseQuery | None = None


@dataclass
class BulkResult:
    """How many selected memories changed, and how many already were as asked."""

    changed: int
    unchanged: int


@dataclass
class BulkPreview:
    """What a bulk action would touch: how many memories, and a few of them."""

    count: int
    sample: list[LongTermMemory]


def _checked_value(action: BulkAction, value: Any) -> Any:
    """The action's value, validated with the same rules as a single edit."""
    if action in (BulkAction.add_tag, BulkAction.remove_tag):
        if not isinstance(value, str):
            raise InvalidInput("a tag is required")
        return with_tags((), [value])[0]
    if action is BulkAction.set_importance:
        return checked_importance(value)
    try:
        if action is BulkAction.set_expiry:
            if value is not None and not isinstance(value, datetime):
                raise ValueError("expiry must be a datetime or none")
            return ensure_utc(value)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    return None


def _conditions(
    db: Database, principal: Principal, selection: Selection
) -> list[ColumnElement[bool]]:
    if selection.query is not None:
        return filter_conditions(principal, selection.query, utcnow(), plan=Plan(db.dialect))
    if not selection.ids:
        raise InvalidInput("select at least one memory")
    return [principal.visible(), _c.id.in_(list(selection.ids))]


async def preview(db: Database, *, principal: Principal, selection: Selection) -> BulkPreview:
    """How many memories a bulk action on selection would touch, with a sample."""
    conditions = _conditions(db, principal, selection)
    query = select(LongTermMemory).where(*conditions).order_by(_c.id)
    async with db.read() as session:
        rows = list((await session.execute(query)).scalars())
    return BulkPreview(count=len(rows), sample=rows[:SAMPLE_SIZE])


def _apply(memory: LongTermMemory, action: BulkAction, value: Any, now: datetime) -> None:
    if action is BulkAction.delete:
        if not memory.is_deleted:
            memory.is_deleted, memory.deleted_at = True, now
    elif action is BulkAction.restore:
        memory.is_deleted, memory.deleted_at = False, None
    elif action is BulkAction.add_tag:
        try:
            memory.tags = with_tags(memory.tags, [value])
        except InvalidInput as exc:
            raise InvalidInput(f"memory {memory.id}: {exc}") from None
    elif action is BulkAction.remove_tag:
        memory.tags = without_tags(memory.tags, [value])
    elif action is BulkAction.set_importance:
        memory.importance = value
    elif action is BulkAction.set_expiry:
        memory.expires_at = value


async def apply(
    db: Database,
    *,
    principal: Principal,
    selection: Selection,
    action: BulkAction,
    value: Any = None,
) -> BulkResult:
    """Run action on every selected memory in one transaction, or on none of them."""
    checked = _checked_value(action, value)
    conditions = _conditions(db, principal, selection)
    now = utcnow()
    query = select(LongTermMemory).where(*conditions).order_by(_c.id).with_for_update()
    changed = unchanged = 0
    async with db.write() as session:
        rows = list((await session.execute(query)).scalars())
        if selection.query is None:
            missing = set(selection.ids) - {memory.id for memory in rows}
            if missing:
                raise NotFound(f"memories not found: {', '.join(map(str, sorted(missing)))}")
        for memory in rows:
            expected = selection.versions.get(memory.id or 0)
            if expected is not None and expected != memory.version:
                raise VersionConflict(
                    f"memory {memory.id} was changed by someone else; nothing was changed",
                    current=memory,
                )
        kind = {
            BulkAction.delete: EventAction.delete,
            BulkAction.restore: EventAction.restore,
        }.get(action, EventAction.update)
        for memory in rows:
            before = events.snapshot(memory)
            _apply(memory, action, checked, now)
            if events.record_change(
                session, memory=memory, before=before, principal=principal, action=kind, now=now
            ):
                changed += 1
            else:
                unchanged += 1
    return BulkResult(changed=changed, unchanged=unchanged)
