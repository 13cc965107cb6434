"""The import's bulk inserts of new rows with their create events, one writer per database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection

from webapp.formats import sqlite_datetime_text
from webapp.services import fulltext
from webapp.services.jsonl import ROW_COLUMNS
from webapp.settings import Settings


@dataclass(frozen=True)
class Actor:
    """Who the import's events name, and the one time every row and event of it gets."""

    name: str
    user_id: int | None
    now: datetime


class Writer:
    """Inserts new rows of a batch with their create events; returns the keys that existed."""

    def __init__(
        self, conn: AsyncConnection, driver: Any, actor: Actor, settings: Settings
    ) -> None:
        self.conn = conn
        self.driver = driver
        self.actor = actor
        self.settings = settings

    async def prepare(self) -> None:
        """Set up what the writer needs inside the import transaction."""

    async def finish(self) -> None:
        """Undo connection settings of prepare() before the connection goes back to the pool."""

    async def insert_new(self, rows: list[tuple[Any, ...]]) -> tuple[int, set[tuple[Any, ...]]]:
        raise NotImplementedError

    async def take_over_search_upkeep(self) -> None:
        """Index inserted rows per batch rather than per row, where that is faster."""

    async def hand_back_search_upkeep(self) -> None:
        """Undo take_over_search_upkeep before the import commits."""


_COLUMN_LIST = ", ".join(ROW_COLUMNS)


class SqliteWriter(Writer):
    """executemany straight into the table: SQLite runs it in C, indexes included.

    Under BEGIN IMMEDIATE nobody else inserts, and SQLite gives each new row max(id) + 1,
    so the rows this batch inserted are exactly those with id above the previous maximum.
    """

    _insert = (
        f"INSERT INTO long_term_memory ({_COLUMN_LIST}, version) "
        f"VALUES ({', '.join('?' * len(ROW_COLUMNS))}, 1) "
        "ON CONFLICT (user_id, namespace, key) DO NOTHING"
    )
    _events = (
        "INSERT INTO memory_event "
        "(memory_id, user_id, actor, actor_user_id, action, changes, created_at) "
        "SELECT id, user_id, ?, ?, 'create', NULL, ? FROM long_term_memory WHERE id > ?"
    )

    async def prepare(self) -> None:
        # Index pages of a million-row table do not fit SQLite's default 2 MB page cache;
        # without a bigger one the import spends its time re-reading them.
        kib = self.settings.sqlite_import_cache_mb * 1024
        await self.driver.execute(f"PRAGMA cache_size = -{int(kib)}")
        # Reads here are few; mapped pages would only count against the import's memory.
        await self.driver.execute("PRAGMA mmap_size = 0")

    async def finish(self) -> None:
        settings = self.settings
        await self.driver.execute(f"PRAGMA cache_size = -{settings.sqlite_cache_mb * 1024}")
        await self.driver.execute(f"PRAGMA mmap_size = {settings.sqlite_mmap_mb * 1024 * 1024}")

    indexes_batches = False

    async def take_over_search_upkeep(self) -> None:
        await fulltext.detach_insert_upkeep(self.conn)
        self.indexes_batches = True

    async def hand_back_search_upkeep(self) -> None:
        if self.indexes_batches:
            await fulltext.reattach_insert_upkeep(self.conn)

    async def insert_new(self, rows: list[tuple[Any, ...]]) -> tuple[int, set[tuple[Any, ...]]]:
        cursor = await self.driver.execute("SELECT coalesce(max(id), 0) FROM long_term_memory")
        (previous_max,) = await cursor.fetchone()
        cursor = await self.driver.executemany(self._insert, rows)
        inserted = cursor.rowcount
        if self.indexes_batches:
            for statement in fulltext.INDEX_ROWS_AFTER:
                await self.driver.execute(statement, (previous_max,))
        await self.driver.execute(
            self._events,
            (
                self.actor.name,
                self.actor.user_id,
                sqlite_datetime_text(self.actor.now),
                previous_max,
            ),
        )
        if inserted == len(rows):
            return inserted, set()
        cursor = await self.driver.execute(
            "SELECT user_id, namespace, key FROM long_term_memory WHERE id > ?", (previous_max,)
        )
        new_keys = set(await cursor.fetchall())
        return inserted, {row[:3] for row in rows} - new_keys


_PG_ARRAY_TYPES = (
    "integer[]",
    "text[]",
    "text[]",
    "text[]",
    "text[]",
    "double precision[]",
    "integer[]",
    "timestamptz[]",
    "timestamptz[]",
    "boolean[]",
    "timestamptz[]",
    "timestamptz[]",
    "timestamptz[]",
)


class PostgresWriter(Writer):
    """New rows go in by COPY (batched heap inserts, about twice as fast as INSERT ... SELECT).

    Each batch is first COPYed optimistically, with ids taken from the table's sequence,
    together with its create events, inside a savepoint. If a key already exists (a
    re-import, a key repeated across batches, a concurrent writer) the COPY fails on the
    unique index; the batch is rolled back to the savepoint and goes through one INSERT
    ... ON CONFLICT DO NOTHING statement instead, which also records the events and
    returns the keys it inserted, so the others can be compared and updated.
    """

    _new_ids = "SELECT array_agg(nextval('long_term_memory_id_seq')) FROM generate_series(1, $1)"
    _event_columns = (
        "memory_id",
        "user_id",
        "actor",
        "actor_user_id",
        "action",
        "changes",
        "created_at",
    )
    _fallback = (
        "WITH batch AS (SELECT * FROM unnest("
        + ", ".join(f"${n}::{kind}" for n, kind in enumerate(_PG_ARRAY_TYPES, start=1))
        + f") WITH ORDINALITY AS b({_COLUMN_LIST}, seq)"
        "), inserted AS ("
        f" INSERT INTO long_term_memory ({_COLUMN_LIST}, version)"
        " SELECT user_id, namespace, key, content, tags::jsonb, importance, access_count,"
        " last_accessed_at, expires_at, is_deleted, deleted_at, created_at, updated_at, 1"
        " FROM batch ORDER BY seq"
        " ON CONFLICT (user_id, namespace, key) DO NOTHING"
        " RETURNING id, user_id, namespace, key"
        "), events AS ("
        " INSERT INTO memory_event"
        " (memory_id, user_id, actor, actor_user_id, action, changes, created_at)"
        " SELECT id, user_id, $14, $15, 'create', NULL, $16 FROM inserted"
        ") SELECT user_id, namespace, key FROM inserted"
    )

    async def insert_new(self, rows: list[tuple[Any, ...]]) -> tuple[int, set[tuple[Any, ...]]]:
        await self.driver.execute("SAVEPOINT import_batch")
        try:
            await self._copy(rows)
        except asyncpg.UniqueViolationError:
            await self.driver.execute("ROLLBACK TO SAVEPOINT import_batch")
            return await self._insert_new_keys_only(rows)
        await self.driver.execute("RELEASE SAVEPOINT import_batch")
        return len(rows), set()

    async def _copy(self, rows: list[tuple[Any, ...]]) -> None:
        ids = await self.driver.fetchval(self._new_ids, len(rows))
        await self.driver.copy_records_to_table(
            "long_term_memory",
            records=[(memory_id, *row, 1) for memory_id, row in zip(ids, rows, strict=True)],
            columns=["id", *ROW_COLUMNS, "version"],
        )
        actor = self.actor
        await self.driver.copy_records_to_table(
            "memory_event",
            records=[
                (memory_id, row[0], actor.name, actor.user_id, "create", None, actor.now)
                for memory_id, row in zip(ids, rows, strict=True)
            ],
            columns=list(self._event_columns),
        )

    async def _insert_new_keys_only(
        self, rows: list[tuple[Any, ...]]
    ) -> tuple[int, set[tuple[Any, ...]]]:
        columns = [list(column) for column in zip(*rows, strict=True)]
        inserted = await self.driver.fetch(
            self._fallback, *columns, self.actor.name, self.actor.user_id, self.actor.now
        )
        new_keys = {tuple(row) for row in inserted}
        return len(new_keys), {row[:3] for row in rows} - new_keys
