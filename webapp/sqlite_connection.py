"""aiosqlite connections whose statements cost one trip to the driver's thread.

aiosqlite runs every sqlite3 call on the connection's own thread and hands the result
back to the event loop. Each such trip wakes that thread, then wakes the loop, and under
load waits for the GIL in between. SQLAlchemy's adapter makes four trips a statement
(open a cursor, execute, fetch all, close it) and one more when the pool resets a
connection that holds no transaction. Here a statement is one trip: execute, read the
description, fetch the first PREFETCH_ROWS rows and close the sqlite3 cursor when they
were all. A larger result (an export's stream) keeps its cursor and fetches the rest in
further trips, so memory stays bounded. A BEGIN travels with the statement after it,
and commit() and rollback() outside a transaction, which sqlite3 would do nothing for,
make no trip: a write transaction of two statements costs three trips, not four.

`engine_creator` plugs these connections into SQLAlchemy through its public
`async_creator` hook, with the arguments its own dialect would give aiosqlite.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from functools import partial
from typing import Any, NamedTuple, Self

import aiosqlite
from sqlalchemy.engine import make_url

_BEGIN = re.compile(r"\s*BEGIN\b(\s+(DEFERRED|IMMEDIATE|EXCLUSIVE))?\s*;?\s*$", re.IGNORECASE)
"""A statement that only opens a transaction: sent with the statement after it."""

PREFETCH_ROWS = 1_000
"""Rows fetched in the trip that executes a statement; a list page asks for 51."""

Row = tuple[Any, ...]
Description = tuple[tuple[Any, ...], ...] | None


class _Executed(NamedTuple):
    """What one trip brings back from the driver's thread."""

    description: Description
    rows: list[Row]
    rowcount: int
    lastrowid: int | None
    open_cursor: sqlite3.Cursor | None
    """The sqlite3 cursor, when rows may remain unread; None once it is closed."""


def _run_statement(
    connection: sqlite3.Connection, sql: str, parameters: Any, *, many: bool, begin: str | None
) -> _Executed:
    """On the driver's thread: begin the transaction the statement opens (if it is the
    first of one), run the statement and read what the caller needs of it."""
    if begin is not None:
        connection.execute(begin)
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
        description = cursor.description
        rows = cursor.fetchmany(PREFETCH_ROWS) if description is not None else []
    except BaseException:
        cursor.close()
        raise
    more = description is not None and len(rows) == PREFETCH_ROWS
    executed = _Executed(
        description, rows, cursor.rowcount, cursor.lastrowid, cursor if more else None
    )
    if not more:
        cursor.close()
    return executed


def _fetch_more(cursor: sqlite3.Cursor, size: int | None) -> tuple[list[Row], bool]:
    """On the driver's thread: up to size more rows (all if None), and whether the cursor
    was used up and closed."""
    rows = cursor.fetchall() if size is None else cursor.fetchmany(size)
    done = size is None or len(rows) < size
    if done:
        cursor.close()
    return rows, done


class OneTripCursor:
    """The part of aiosqlite's Cursor that SQLAlchemy's adapter uses, one trip a statement."""

    def __init__(self, connection: OneTripConnection) -> None:
        self._connection = connection
        self._open: sqlite3.Cursor | None = None
        self._rows: list[Row] = []
        self.description: Description = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.arraysize = 1

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def execute(self, sql: str, parameters: Any = ()) -> Self:
        """Run sql and keep its first rows."""
        return await self._run(sql, () if parameters is None else parameters, many=False)

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> Self:
        """Run sql once for each set of parameters."""
        return await self._run(sql, parameters, many=True)

    async def _run(self, sql: str, parameters: Any, *, many: bool) -> Self:
        await self.close()
        connection = self._connection
        if not many and _BEGIN.match(sql):
            connection.defer_begin(sql)
            self.description, self._rows, self.rowcount, self.lastrowid = None, [], -1, None
            return self
        executed = await connection.run_on_thread(
            partial(
                _run_statement,
                connection.sqlite3_connection,
                sql,
                parameters,
                many=many,
                begin=connection.take_deferred_begin(),
            )
        )
        self.description = executed.description
        self._rows = executed.rows
        self.rowcount = executed.rowcount
        self.lastrowid = executed.lastrowid
        self._open = executed.open_cursor
        return self

    async def fetchall(self) -> list[Row]:
        """Every remaining row."""
        return await self._take(None)

    async def fetchmany(self, size: int | None = None) -> list[Row]:
        """Up to size (default: arraysize) more rows."""
        return await self._take(self.arraysize if size is None else size)

    async def fetchone(self) -> Row | None:
        """The next row, or None."""
        rows = await self._take(1)
        return rows[0] if rows else None

    async def _take(self, size: int | None) -> list[Row]:
        """size rows (None: all), from those already fetched first, then from the driver."""
        buffered = self._rows
        if size is not None and len(buffered) >= size:
            self._rows = buffered[size:]
            return buffered[:size]
        self._rows = []
        if self._open is None:
            return buffered
        missing = None if size is None else size - len(buffered)
        rows, done = await self._connection.run_on_thread(partial(_fetch_more, self._open, missing))
        if done:
            self._open = None
        return buffered + rows

    def __aiter__(self) -> AsyncIterator[Row]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Row]:
        while rows := await self.fetchmany(self._connection.iter_chunk_size):
            for row in rows:
                yield row

    async def close(self) -> None:
        """Forget unread rows; close the sqlite3 cursor if one is still open (one trip)."""
        self._rows = []
        cursor, self._open = self._open, None
        if cursor is not None:
            await self._connection.run_on_thread(cursor.close)


class OneTripConnection(aiosqlite.Connection):
    """An aiosqlite connection with OneTripCursor cursors, BEGIN sent with the first
    statement of its transaction, and no empty commits."""

    _deferred_begin: str | None = None

    def defer_begin(self, sql: str) -> None:
        """Send this BEGIN with the next statement, in its trip (or never, if the
        transaction ends first: it would have done nothing)."""
        self._deferred_begin = sql

    def take_deferred_begin(self) -> str | None:
        """The BEGIN still to send, now handed to the statement that sends it."""
        begin, self._deferred_begin = self._deferred_begin, None
        return begin

    @property
    def sqlite3_connection(self) -> sqlite3.Connection:
        """The sqlite3 connection, to be used on the driver's thread only."""
        return self._conn

    @property
    def iter_chunk_size(self) -> int:
        """Rows fetched at a time when a cursor is iterated."""
        return self._iter_chunk_size

    def run_on_thread(self, function: Callable[[], Any]) -> Awaitable[Any]:
        """Run function on the connection's thread, in order with its other calls."""
        return self._execute(function)

    def cursor(self) -> OneTripCursor:  # type: ignore[override]
        """A cursor; it is its own async context manager, as aiosqlite's cursor() is."""
        return OneTripCursor(self)

    async def commit(self) -> None:
        """Commit the open transaction; without one (or before its BEGIN was sent),
        sqlite3 would do nothing, so no trip."""
        self._deferred_begin = None
        if self._conn.in_transaction:
            await super().commit()

    async def rollback(self) -> None:
        """Roll back the open transaction; without one, no trip."""
        self._deferred_begin = None
        if self._conn.in_transaction:
            await super().rollback()


def connect(database: str, *, iter_chunk_size: int = 64, **kwargs: Any) -> OneTripConnection:
    """Like aiosqlite.connect: an awaitable connection to database; sqlite3.connect's
    keyword arguments pass through."""
    connection = OneTripConnection(partial(sqlite3.connect, database, **kwargs), iter_chunk_size)
    # As SQLAlchemy does for aiosqlite: a connection never closed must not keep the
    # process from exiting.
    connection._thread.daemon = True
    return connection


def engine_creator(url: str, **connect_args: Any) -> Callable[[], OneTripConnection]:
    """An `async_creator` for create_async_engine(url): the database and options that
    SQLAlchemy's aiosqlite dialect reads from url, updated with connect_args."""
    parsed = make_url(url)
    args: Sequence[Any]
    args, options = parsed.get_dialect()().create_connect_args(parsed)
    return partial(connect, *args, **{**options, **connect_args})
