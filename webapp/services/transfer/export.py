"""Exports: the matching memories as JSON Lines or CSV, read in keyset batches.

Every export (the CLI's `export_jsonl`, the browser's `export_selection`) reads the same
way: ORDER BY id with `id > last` and a LIMIT, one short read per batch, so memory stays
flat whatever the row count and no connection is held while a slow client reads.
The price is that an export is not one snapshot: a row changed while the export runs
shows as it was when its batch was read.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

from sqlalchemy import ColumnElement, select

from webapp.db import Database
from webapp.formats import dump_json, format_time
from webapp.models import BrowseQuery, LongTermMemory, User
from webapp.services.browse import filter_conditions
from webapp.services.filters import namespace_condition, state_condition, tags_condition
from webapp.services.jsonl import FIELDS, export_line
from webapp.services.plan import Plan
from webapp.services.principal import Principal
from webapp.types import utcnow

ExportFormat = Literal["jsonl", "csv"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("jsonl", "csv")
EXPORT_BATCH_ROWS = 2000

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
"""A CSV cell starting with one of these is read as a formula by spreadsheets; it is
written with a leading `'` (OWASP's advice), which spreadsheets show as text."""

_memories = LongTermMemory.__table__  # type: ignore[attr-defined]
_users = User.__table__  # type: ignore[attr-defined]
_TIME_FIELDS = frozenset(name for name in FIELDS if name.endswith("_at"))


async def _batches(
    db: Database, conditions: Sequence[ColumnElement[bool]]
) -> AsyncIterator[list[Any]]:
    """The matching rows (FIELDS in order), oldest id first, EXPORT_BATCH_ROWS at a time."""
    columns = (_users.c.username, *(_memories.c[name] for name in FIELDS[1:]), _memories.c.id)
    query = (
        select(*columns)
        .select_from(_memories.join(_users, _users.c.id == _memories.c.user_id))
        .where(*conditions)
        .order_by(_memories.c.id)
        .limit(EXPORT_BATCH_ROWS)
    )
    last_id = 0
    while True:
        async with db.engine.connect() as conn:
            rows = list(await conn.execute(query.where(_memories.c.id > last_id)))
        if not rows:
            return
        last_id = rows[-1][-1]
        yield [row[:-1] for row in rows]
        if len(rows) < EXPORT_BATCH_ROWS:
            return


def _cli_conditions(
    db: Database, username: str | None, namespace: str | None, tags: Sequence[str], state: str
) -> list[ColumnElement[bool]]:
    conditions = [state_condition(state, now=utcnow())]
    if username is not None:
        conditions.append(_users.c.username == username)
    if namespace is not None:
        conditions.append(namespace_condition(namespace))
    if tags:
        conditions.append(
            tags_condition(tags, mode="all", plan=Plan(db.dialect, db.search_language))
        )
    return conditions


async def export_jsonl(
    db: Database,
    *,
    username: str | None = None,
    namespace: str | None = None,
    tags: Sequence[str] = (),
    state: str = "all",
) -> AsyncIterator[bytes]:
    """Yield the matching memories as JSON Lines (the import format), oldest id first."""
    conditions = _cli_conditions(db, username, namespace, tags, state)
    async for rows in _batches(db, conditions):
        yield b"".join(export_line(row) for row in rows)


def csv_cell(value: Any) -> Any:
    """One CSV cell: times as in JSON Lines, tags as a JSON array, formulas defused."""
    if isinstance(value, list):
        return dump_json(value)
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _csv_rows(rows: Sequence[Sequence[Any]], *, header: bool) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    if header:
        writer.writerow(FIELDS)
    for row in rows:
        writer.writerow(
            csv_cell(format_time(value) if name in _TIME_FIELDS else value)
            for name, value in zip(FIELDS, row, strict=True)
        )
    return buffer.getvalue().encode()


def selection_conditions(
    db: Database, *, principal: Principal, query: BrowseQuery, ids: Sequence[int] = ()
) -> list[ColumnElement[bool]]:
    """What a browser export covers: the chosen ids (any state) or the browse filter,
    always within what principal may see."""
    if ids:
        return [principal.visible(), _memories.c.id.in_(list(ids))]
    return filter_conditions(principal, query, utcnow(), plan=Plan(db.dialect, db.search_language))


def export_selection(
    db: Database,
    *,
    principal: Principal,
    query: BrowseQuery,
    ids: Sequence[int] = (),
    export_format: ExportFormat = "jsonl",
) -> AsyncIterator[bytes]:
    """What the browser shows for query (or the chosen ids) as JSON Lines or CSV.

    The filter is checked here (InvalidInput), before the first byte is streamed."""
    conditions = selection_conditions(db, principal=principal, query=query, ids=ids)
    return _encoded(db, conditions, export_format)


async def _encoded(
    db: Database, conditions: Sequence[ColumnElement[bool]], export_format: ExportFormat
) -> AsyncIterator[bytes]:
    if export_format == "csv":
        yield _csv_rows([], header=True)
    async for rows in _batches(db, conditions):
        if export_format == "csv":
            yield _csv_rows(rows, header=False)
        else:
            yield b"".join(export_line(row) for row in rows)
