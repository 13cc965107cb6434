"""Browsing memories: every filter of BrowseQuery, keyset pagination both ways, capped counts.

Pages are found by position, never by OFFSET: a cursor holds the sort key and id of the
row it continues from, so page 200 costs what page 1 costs. id breaks ties, so every
matching row is visited exactly once in either direction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Select,
    and_,
    func,
    literal,
    literal_column,
    or_,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.sql.elements import ColumnClause, UnaryExpression

from webapp.db import Database
from webapp.models import BrowseQuery, LongTermMemory, MemoryRow
from webapp.services.browse_plan import NULLABLE_SORTS, plan_browse
from webapp.services.cursors import Cursor, CursorSigner
from webapp.services.filters import (
    namespace_condition,
    state_condition_now,
    state_expression_now,
    tags_condition,
    text_condition,
    text_filter,
)
from webapp.services.plan import Plan
from webapp.services.principal import Principal
from webapp.services.users import user_id_named, usernames_in
from webapp.types import utcnow

COUNT_CAP = 1_000
"""Counts are exact up to here, then shown as '1,000+'. Counting costs a row visit per
match (the state and scope checks need the row), so the cap bounds the cost of a page:
10,000 would cost 10-40 ms a page on a million rows."""

_memories = LongTermMemory.__table__  # type: ignore[attr-defined]
_c = _memories.c
_ID: ColumnClause[int] = literal_column("id")


@dataclass
class Page:
    """One page of memories, with cursors to its neighbours and a count capped at COUNT_CAP."""

    items: list[MemoryRow]
    next_cursor: str | None
    prev_cursor: str | None
    count: int
    count_capped: bool
    owners: dict[int, str] = field(default_factory=dict)
    """The usernames of the items' owners, by user id."""


def filter_conditions(
    principal: Principal,
    query: BrowseQuery,
    now: datetime,
    *,
    plan: Plan,
) -> list[ColumnElement[bool]]:
    """The WHERE clauses of query for principal, written as plan says.

    A `user` filter names the user by a subquery: an unknown user, or (for an ordinary
    user) anyone else, matches nothing, without a statement of its own to find out.
    """
    conditions: list[ColumnElement[bool]] = [
        principal.visible(),
        state_condition_now(query.state),
    ]
    if query.user is not None:
        conditions.append(_c.user_id == user_id_named(query.user))
    if query.namespace:
        conditions.append(namespace_condition(query.namespace))
    if query.tag:
        conditions.append(tags_condition(query.tag, mode=query.tags_mode, plan=plan))
    text = text_filter(query)
    if text is not None:
        conditions.append(text_condition(text, plan=plan))
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


def _ordering(column: Any, descending: bool, nullable: bool) -> list[UnaryExpression[Any]]:
    """ORDER BY for a sort: NULL counts as the smallest value, id breaks ties.

    A NULLS clause only where the column can be NULL: PostgreSQL walks a b-tree
    backwards only in its own default order (DESC NULLS FIRST), so naming NULLS LAST on
    a NOT NULL column would cost a full sort instead of an index walk.
    """
    if not nullable:
        return [column.desc(), _c.id.desc()] if descending else [column.asc(), _c.id.asc()]
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


def _page_statement(
    conditions: list[ColumnElement[bool]],
    field: str,
    descending: bool,
    cursor: Cursor | None,
    limit: int,
    matches: ColumnElement[int],
    *,
    among: Select[tuple[int]] | None = None,
    two_walks: bool = False,
) -> Select[Any]:
    """The next `limit` rows in sort order after the cursor's row (or from the start):
    MemoryRow's columns, then `matches` (the count, read in the same statement).

    among: the ids of every match, when they are few: the page sorts those rows instead
    of walking the sort index. two_walks: seek past the cursor as _sqlite_after does.
    """
    column = _c[field]
    nullable = field in NULLABLE_SORTS
    columns = [*(_c[name] for name in MemoryRow._fields[:-1]), state_expression_now(), matches]
    if among is not None:
        page = select(*columns).where(_c.id.in_(among))
        if cursor is not None:
            page = page.where(_after(column, descending, nullable, cursor.value, cursor.id))
    elif cursor is not None and two_walks:
        walks = _sqlite_after(conditions, column, descending, cursor, limit)
        page = select(*columns).where(_c.id.in_(walks))
    else:
        page = select(*columns).where(*conditions)
        if cursor is not None:
            page = page.where(_after(column, descending, nullable, cursor.value, cursor.id))
    return page.order_by(*_ordering(column, descending, nullable)).limit(limit)


def _sqlite_after(
    conditions: list[ColumnElement[bool]],
    column: Any,
    descending: bool,
    cursor: Cursor,
    limit: int,
) -> CompoundSelect[Any]:
    """The ids of the next `limit` rows after cursor, and some more (SQLite, NOT NULL sorts).

    SQLite seeks a row-value comparison `(value, id) < (?, ?)` by its first column only:
    inside a block of tied values (an import without timestamps gives thousands of rows
    one updated_at) it would read every tied row before the cursor, so that page 200
    costs like OFFSET. Two walks seek exactly: the rows tied with the cursor's value past
    its id (an equality, then a range on id), then the rows past its value. (Their ids
    are named by a literal column: building each subquery's column collection cost more
    than running the statement.)
    """
    if descending:
        tied, past = [column == cursor.value, _c.id < cursor.id], column < cursor.value
    else:
        tied, past = [column == cursor.value, _c.id > cursor.id], column > cursor.value
    order = _ordering(column, descending, nullable=False)
    walks = [
        select(_c.id).where(*conditions, *seek).order_by(*order).limit(limit)
        for seek in (tied, [past])
    ]
    return union_all(*(select(_ID).select_from(walk.subquery()) for walk in walks))


def _count_statement(
    conditions: list[ColumnElement[bool]], driver: Select[tuple[int]] | None
) -> Select[int]:
    """How many rows match, counting no further than one past COUNT_CAP."""
    matching = select(_c.id)
    if driver is not None:
        matches = driver.subquery()
        matching = matching.join_from(matches, _memories, list(matches.c)[0] == _c.id)
    capped = matching.where(*conditions).limit(COUNT_CAP + 1).subquery()
    return select(func.count()).select_from(capped)


def _every_match(conditions: list[ColumnElement[bool]]) -> Select[tuple[int]]:
    """The ids of every match, when counting found no more than COUNT_CAP (the limit
    keeps the planners from walking the sort index to find them)."""
    return select(_c.id).where(*conditions).limit(COUNT_CAP + 1)


async def browse(
    db: Database, *, principal: Principal, query: BrowseQuery, signer: CursorSigner
) -> Page:
    """One page of the memories matching query, as principal may see them (not an access).

    Its items are MemoryRow tuples (every column of the memory and its `state`), not
    ORM objects: a list shows them and changes none, and loading 50 ORM
    objects costs more than the query that finds them.
    """
    now = utcnow()
    field = query.sort.lstrip("-")
    descending = query.sort.startswith("-")
    cursor = signer.load(query.cursor, sort=query.sort) if query.cursor else None
    forward = cursor is None or cursor.forward
    page_descending = descending if forward else not descending

    async with db.read() as session:
        plan = await plan_browse(
            session,
            dialect=db.dialect,
            language=db.search_language,
            principal=principal,
            query=query,
            past_cursor=cursor is not None,
        )
        conditions = filter_conditions(principal, query, now, plan=plan.filters)
        count_from, rest = plan.counting(query)
        counted = conditions
        if rest is not None:
            counted = filter_conditions(principal, rest, now, plan=plan.count_filters)
        count_statement = _count_statement(counted, count_from)
        among = None
        if plan.count_first:
            known = int((await session.execute(count_statement)).scalar_one())
            matches: ColumnElement[int] = literal(known).label("matches")
            if known <= COUNT_CAP:
                among = _every_match(conditions)
            elif plan.test_each_row:
                conditions = plan.tested_per_row(conditions)
        else:
            matches = count_statement.scalar_subquery().label("matches")
        statement = _page_statement(
            conditions,
            field,
            page_descending,
            cursor,
            query.limit + 1,
            matches,
            among=among,
            two_walks=plan.two_walks,
        )
        found = (await session.execute(statement)).all()
        rows = [MemoryRow(*values) for *values, _ in found]
        if found:
            count = int(found[0][-1])
        elif cursor is None:
            count = 0  # nothing from the start: nothing at all
        else:  # past the end of the matches, which the count still holds
            count = int((await session.execute(count_statement)).scalar_one())
        if query.user is not None:  # the filter matched the owner's exact username
            owners = {row.user_id: query.user for row in rows}
        else:
            owners = await usernames_in(session, {row.user_id for row in rows})

    more = len(rows) > query.limit
    rows = rows[: query.limit]
    if not forward:
        rows.reverse()

    def cursor_at(memory: MemoryRow, *, ahead: bool) -> str:
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
        owners=owners,
    )
