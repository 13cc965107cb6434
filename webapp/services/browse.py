"""Browsing memories: the SPEC 3 filters, keyset pagination both ways, capped counts.

Pages are found by position, never by OFFSET: a cursor holds the sort key and id of the
row it continues from, so page 200 costs what page 1 costs. id breaks ties, so every
matching row is visited exactly once in either direction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, tuple_
from sqlalchemy.sql.elements import UnaryExpression
from sqlmodel import col

from webapp.db import Database
from webapp.models import BrowseQuery, LongTermMemory, User
from webapp.services.cursors import Cursor, CursorSigner
from webapp.services.filters import namespace_condition, state_condition, tags_condition
from webapp.services.principal import Principal
from webapp.types import utcnow

COUNT_CAP = 10_000
NULLABLE_SORTS = frozenset({"last_accessed_at"})

_c = LongTermMemory.__table__.c  # type: ignore[attr-defined]


@dataclass
class Page:
    """One page of memories, with cursors to its neighbours and a count capped at COUNT_CAP."""

    items: list[LongTermMemory]
    next_cursor: str | None
    prev_cursor: str | None
    count: int
    count_capped: bool


async def filter_conditions(
    db: Database, principal: Principal, query: BrowseQuery, now: datetime
) -> list[ColumnElement[bool]] | None:
    """The WHERE clauses of query for principal; None when nothing can match."""
    conditions: list[ColumnElement[bool]] = [
        principal.visible(),
        state_condition(query.state, now=now),
    ]
    if query.user is not None:
        by_name = select(col(User.id)).where(col(User.username) == query.user)
        async with db.read() as session:
            owner = (await session.execute(by_name)).scalar_one_or_none()
        if owner is None or (not principal.is_admin and owner != principal.user_id):
            return None
        conditions.append(_c.user_id == owner)
    if query.namespace:
        conditions.append(namespace_condition(query.namespace, dialect=db.dialect))
    if query.tag:
        conditions.append(tags_condition(query.tag, mode=query.tags_mode, dialect=db.dialect))
    if query.min_importance is not None:
        conditions.append(_c.importance >= query.min_importance)
    if query.max_importance is not None:
        conditions.append(_c.importance <= query.max_importance)
    if query.expiring_within is not None:
        horizon = now + timedelta(days=query.expiring_within)
        conditions.append(and_(_c.expires_at > now, _c.expires_at <= horizon))
    if query.accessed == "never":
        conditions.append(_c.last_accessed_at.is_(None))
    elif query.accessed == "stale":
        cutoff = now - timedelta(days=query.stale_days)
        conditions.append(func.coalesce(_c.last_accessed_at, _c.created_at) < cutoff)
    return conditions


def _ordering(column: Any, descending: bool) -> list[UnaryExpression[Any]]:
    """ORDER BY for a sort: NULL counts as the smallest value, id breaks ties."""
    if descending:
        return [column.desc().nulls_last(), _c.id.desc()]
    return [column.asc().nulls_first(), _c.id.asc()]


def _after(column: Any, descending: bool, nullable: bool, value: Any, row_id: int) -> Any:
    """Rows strictly after (value, row_id) in the ordering _ordering gives."""
    if not nullable:
        key, position = tuple_(column, _c.id), tuple_(value, row_id)
        return key < position if descending else key > position
    if descending:  # non-null values high to low, then the NULLs, ids high to low
        if value is None:
            return and_(column.is_(None), _c.id < row_id)
        return or_(
            and_(column.is_not(None), tuple_(column, _c.id) < tuple_(value, row_id)),
            column.is_(None),
        )
    if value is None:  # the NULLs first, ids low to high, then the non-null values
        return or_(and_(column.is_(None), _c.id > row_id), column.is_not(None))
    return and_(column.is_not(None), tuple_(column, _c.id) > tuple_(value, row_id))


async def browse(
    db: Database, *, principal: Principal, query: BrowseQuery, signer: CursorSigner
) -> Page:
    """One page of the memories matching query, as principal may see them (not an access)."""
    now = utcnow()
    conditions = await filter_conditions(db, principal, query, now)
    if conditions is None:
        return Page(items=[], next_cursor=None, prev_cursor=None, count=0, count_capped=False)
    field = query.sort.lstrip("-")
    descending = query.sort.startswith("-")
    column = _c[field]
    nullable = field in NULLABLE_SORTS
    cursor = signer.load(query.cursor, sort=query.sort) if query.cursor else None
    forward = cursor is None or cursor.forward
    walk_descending = descending if forward else not descending

    statement = select(LongTermMemory).where(*conditions)
    if cursor is not None:
        statement = statement.where(
            _after(column, walk_descending, nullable, cursor.value, cursor.id)
        )
    statement = statement.order_by(*_ordering(column, walk_descending)).limit(query.limit + 1)
    async with db.read() as session:
        rows = list((await session.execute(statement)).scalars())
        count_query = select(func.count()).select_from(
            select(_c.id).where(*conditions).limit(COUNT_CAP + 1).subquery()
        )
        count = int((await session.execute(count_query)).scalar_one())

    more = len(rows) > query.limit
    rows = rows[: query.limit]
    if not forward:
        rows.reverse()

    def cursor_at(memory: LongTermMemory, *, ahead: bool) -> str:
        assert memory.id is not None
        return signer.dump(
            Cursor(sort=query.sort, value=getattr(memory, field), id=memory.id, forward=ahead)
        )

    has_next = more if forward else cursor is not None
    has_prev = cursor is not None if forward else more
    return Page(
        items=rows,
        next_cursor=cursor_at(rows[-1], ahead=True) if rows and has_next else None,
        prev_cursor=cursor_at(rows[0], ahead=False) if rows and has_prev else None,
        count=min(count, COUNT_CAP),
        count_capped=count > COUNT_CAP,
    )
