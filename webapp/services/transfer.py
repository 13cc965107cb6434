"""Import and export of memories as JSON Lines, in the format of gen_memories.py.

Import streams the source in chunks. A worker process parses and validates chunk N+1
while this process writes chunk N, so the two cores of a small machine both work. Each
batch is inserted in bulk with ON CONFLICT DO NOTHING (executemany on SQLite; COPY into
a staging table then one INSERT on PostgreSQL), so the database maintains every index
itself, and one set-based INSERT records a `create` event per new row. Rows whose key
already exists are compared field by field: changed ones are updated with an `update`
event holding the old and new values; identical ones are left alone.

The whole import is one transaction: a bad line raises ImportFailed naming it and
nothing is written. A dry run does all the work and rolls back, so its counts are
exactly what the real run would report.
"""

from __future__ import annotations

import asyncio
import itertools
import pickle
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

import asyncpg
from sqlalchemy import Index, bindparam, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.schema import CreateIndex, DropIndex

from webapp.db import WRITE_OPTION
from webapp.errors import ImportFailed
from webapp.formats import sqlite_datetime_text
from webapp.migrate import include_object_for
from webapp.models import LongTermMemory, MemoryEvent, User
from webapp.services import fulltext
from webapp.services.filters import namespace_condition, state_condition, tags_condition
from webapp.services.jsonl import (
    FIELDS,
    ROW_COLUMNS,
    UPDATABLE_COLUMNS,
    ParsedChunk,
    ParseOptions,
    canonical,
    export_line,
    json_value,
    parse_chunk,
)
from webapp.services.parse_worker import HEADER
from webapp.services.plan import Plan
from webapp.services.users import UNUSABLE_PASSWORD
from webapp.settings import Settings
from webapp.types import utcnow

CHUNK_BYTES = 1024 * 1024
IN_FLIGHT_CHUNKS = 3
IMPORT_ACTOR = "import"
BATCH_ROWS = 5000
ANALYZE_AFTER_ROWS = 10_000

ProgressCallback = Callable[[int], None]

_memories = LongTermMemory.__table__  # type: ignore[attr-defined]
_users = User.__table__  # type: ignore[attr-defined]
_events = MemoryEvent.__table__  # type: ignore[attr-defined]


@dataclass
class ImportReport:
    """What an import did (or, for a dry run, would do)."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    users_created: int = 0
    lines: int = 0
    dry_run: bool = False


@dataclass(frozen=True)
class _Actor:
    name: str
    user_id: int | None
    now: datetime


# --- reading ---------------------------------------------------------------------------


def _chunks(source: IO[bytes], chunk_bytes: int) -> Any:
    """(data, first line number) pieces of whole lines read from source."""
    line_no = 1
    pending = b""
    while True:
        block = source.read(chunk_bytes)
        if not block:
            break
        data = pending + block
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            pending = data
            continue
        pending = data[cut:]
        yield data[:cut], line_no
        line_no += data.count(b"\n", 0, cut)
    if pending:
        yield pending, line_no


async def _parsed_chunks(
    source: IO[bytes], options: ParseOptions, parallel: bool | None
) -> AsyncIterator[tuple[ParsedChunk, int]]:
    """Parsed chunks with their size in bytes, parsed in a worker process when it pays."""
    pieces = _chunks(source, CHUNK_BYTES)
    first = next(pieces, None)
    if first is None:
        return
    second = next(pieces, None)
    head = [first] if second is None else [first, second]
    if parallel is None:
        parallel = second is not None  # one chunk: starting a process costs more than it saves
    if not parallel:
        for data, line_no in itertools.chain(head, pieces):
            yield parse_chunk(data, line_no, options), len(data)
        return
    async for parsed in _parse_in_worker(itertools.chain(head, pieces), options):
        yield parsed


async def _parse_in_worker(
    pieces: Iterator[tuple[bytes, int]], options: ParseOptions
) -> AsyncIterator[tuple[ParsedChunk, int]]:
    """Send pieces to a parse worker process and yield its answers in order.

    A feeder task keeps at most IN_FLIGHT_CHUNKS pieces ahead of the consumer, and a
    reader task drains the worker's answers as they come, so the worker parses while
    this process waits on the database, and memory stays bounded.
    """
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "webapp.services.parse_worker",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert worker.stdin is not None and worker.stdout is not None
    requests, responses = worker.stdin, worker.stdout
    slots = asyncio.Semaphore(IN_FLIGHT_CHUNKS)
    sizes: asyncio.Queue[int | None] = asyncio.Queue()
    answers: asyncio.Queue[ParsedChunk | BaseException] = asyncio.Queue()

    async def feed() -> None:
        while True:
            await slots.acquire()
            piece = await asyncio.to_thread(next, pieces, None)
            if piece is None:
                break
            payload = pickle.dumps((*piece, options), protocol=pickle.HIGHEST_PROTOCOL)
            requests.write(HEADER.pack(len(payload)) + payload)
            await requests.drain()
            await sizes.put(len(piece[0]))
        requests.close()
        await sizes.put(None)

    async def read() -> None:
        try:
            while True:
                (size,) = HEADER.unpack(await responses.readexactly(HEADER.size))
                await answers.put(pickle.loads(await responses.readexactly(size)))
        except asyncio.IncompleteReadError:
            await answers.put(RuntimeError("the import's parse worker stopped unexpectedly"))

    feeder = asyncio.create_task(feed())
    reader = asyncio.create_task(read())
    try:
        while (size := await sizes.get()) is not None:
            answer = await answers.get()
            if isinstance(answer, BaseException):
                raise answer
            slots.release()
            yield answer, size
        await feeder
    finally:
        for task in (feeder, reader):
            task.cancel()
        await asyncio.gather(feeder, reader, return_exceptions=True)
        if worker.returncode is None:
            try:
                worker.kill()
            except ProcessLookupError:
                pass
        await worker.wait()


# --- writing ---------------------------------------------------------------------------


class _Writer:
    """Inserts new rows of a batch with their create events; returns the keys that existed."""

    def __init__(
        self, conn: AsyncConnection, driver: Any, actor: _Actor, settings: Settings
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


class _SqliteWriter(_Writer):
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


class _PostgresWriter(_Writer):
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


async def _update_existing(
    conn: AsyncConnection, rows: Sequence[tuple[Any, ...]], actor: _Actor, report: ImportReport
) -> None:
    """Compare rows whose key exists with the stored ones; update and audit what changed."""
    by_key = {row[:3]: row for row in rows}
    key_columns = tuple_(_memories.c.user_id, _memories.c.namespace, _memories.c.key)
    stored_columns = [_memories.c[name] for name in UPDATABLE_COLUMNS]
    updates: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    keys = list(by_key)
    for start in range(0, len(keys), 500):
        query = select(
            _memories.c.id,
            _memories.c.user_id,
            _memories.c.namespace,
            _memories.c.key,
            *stored_columns,
        ).where(key_columns.in_(keys[start : start + 500]))
        for stored in await conn.execute(query):
            memory_id, user_id = stored[0], stored[1]
            incoming = by_key[tuple(stored[1:4])]
            new_values = {
                name: canonical(name, value)
                for name, value in zip(UPDATABLE_COLUMNS, incoming[3:], strict=True)
            }
            changes = {
                name: {"old": json_value(old), "new": json_value(new_values[name])}
                for name, old in zip(UPDATABLE_COLUMNS, stored[4:], strict=True)
                if canonical(name, old) != new_values[name]
            }
            if not changes:
                report.unchanged += 1
                continue
            updates.append({"memory_id": memory_id, **new_values})
            events.append(
                {
                    "memory_id": memory_id,
                    "user_id": user_id,
                    "actor": actor.name,
                    "actor_user_id": actor.user_id,
                    "action": "update",
                    "changes": changes,
                    "created_at": actor.now,
                }
            )
    if updates:
        statement = (
            update(_memories)
            .where(_memories.c.id == bindparam("memory_id"))
            .values(
                {
                    **{name: bindparam(name) for name in UPDATABLE_COLUMNS},
                    "version": _memories.c.version + 1,
                }
            )
        )
        await conn.execute(statement, updates)
        await conn.execute(insert(_events), events)
        report.updated += len(updates)


@dataclass
class _DeferredIndexes:
    """What _defer_indexes dropped, for _rebuild_indexes to build again."""

    indexes: list[Index] = field(default_factory=list)
    search: bool = False


async def _defer_indexes(conn: AsyncConnection) -> _DeferredIndexes:
    """Into an empty table, drop the secondary indexes now and build them once at the end.

    Building an index from a million rows (a sort) is several times cheaper than keeping
    it up to date row by row: an initial load or a restore into a fresh database runs
    about a third faster. The same goes for the full-text and tag indexes. The unique
    (user_id, namespace, key) index stays, since the import needs it to find repeated
    keys. Only done when the table is empty, because on PostgreSQL dropping an index
    locks the table until the import commits.
    """
    for_this_dialect = include_object_for(conn.dialect.name)
    deferred = _DeferredIndexes()
    for table in (_memories, _events):
        if (await conn.execute(select(table.c.id).limit(1))).first() is not None:
            continue
        for index in sorted(table.indexes, key=lambda index: str(index.name)):
            if index.unique or not for_this_dialect(index, index.name, "index", False, None):
                continue
            await conn.execute(DropIndex(index))
            deferred.indexes.append(index)
        if table is _memories:
            await fulltext.suspend_for_bulk_load(conn)
            deferred.search = True
    return deferred


async def _rebuild_indexes(conn: AsyncConnection, deferred: _DeferredIndexes) -> None:
    """Create the indexes _defer_indexes dropped, from the models' own definitions."""
    if conn.dialect.name == "postgresql" and (deferred.indexes or deferred.search):
        await conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '256MB'")
    for index in deferred.indexes:
        await conn.execute(CreateIndex(index))
    if deferred.search:
        await fulltext.resume_after_bulk_load(conn)


async def _resolve_users(
    conn: AsyncConnection,
    rows: list[tuple[Any, ...]],
    user_ids: dict[str, int],
    report: ImportReport,
    now: datetime,
) -> list[tuple[Any, ...]]:
    """Rows with user ids in place of names; users not seen before are created."""
    missing = {row[0] for row in rows} - user_ids.keys()
    if missing:
        query = select(_users.c.username, _users.c.id)
        user_ids.update(
            tuple(row) for row in await conn.execute(query.where(_users.c.username.in_(missing)))
        )
        new_names = sorted(missing - user_ids.keys())
        if new_names:
            await conn.execute(
                insert(_users),
                [
                    {
                        "username": name,
                        "password_hash": UNUSABLE_PASSWORD,
                        "is_admin": False,
                        "is_active": True,
                        "created_at": now,
                    }
                    for name in new_names
                ],
            )
            created = await conn.execute(query.where(_users.c.username.in_(new_names)))
            user_ids.update(tuple(row) for row in created)
            report.users_created += len(new_names)
    return [(user_ids[row[0]], *row[1:]) for row in rows]


async def import_jsonl(
    engine: AsyncEngine,
    *,
    source: IO[bytes],
    settings: Settings,
    dry_run: bool = False,
    actor: str = IMPORT_ACTOR,
    actor_user_id: int | None = None,
    progress: ProgressCallback | None = None,
    parallel: bool | None = None,
) -> ImportReport:
    """Import JSON Lines from source in one transaction; ImportFailed names a bad line.

    parallel: parse in a worker process (None: when the input is larger than one chunk).
    """
    report = ImportReport(dry_run=dry_run)
    who = _Actor(name=actor, user_id=actor_user_id, now=utcnow())
    dialect = engine.dialect.name
    options = ParseOptions(
        for_sqlite=dialect == "sqlite",
        content_max_bytes=settings.content_max_bytes,
        now=who.now,
    )
    async with engine.connect() as plain_conn:
        conn = await plain_conn.execution_options(**{WRITE_OPTION: True})
        driver = (await conn.get_raw_connection()).driver_connection
        writer_class = _SqliteWriter if dialect == "sqlite" else _PostgresWriter
        writer = writer_class(conn, driver, who, settings)
        transaction = await conn.begin()
        try:
            await writer.prepare()
            deferred = await _defer_indexes(conn)
            if not deferred.search:
                await writer.take_over_search_upkeep()
            user_ids: dict[str, int] = {}

            async def write(batch: list[tuple[Any, ...]]) -> None:
                rows = await _resolve_users(conn, batch, user_ids, report, who.now)
                inserted, existing = await writer.insert_new(rows)
                report.created += inserted
                if existing:
                    clashing = [row for row in rows if row[:3] in existing]
                    await _update_existing(conn, clashing, who, report)

            batch: list[tuple[Any, ...]] = []
            keys: set[tuple[Any, ...]] = set()
            async for chunk, size in _parsed_chunks(source, options, parallel):
                for row in chunk.rows:
                    # A key repeated within one batch must wait for the next one: the
                    # later line wins, and PostgreSQL cannot upsert a row twice at once.
                    if row[:3] in keys or len(batch) >= BATCH_ROWS:
                        await write(batch)
                        batch, keys = [], set()
                    batch.append(row)
                    keys.add(row[:3])
                report.lines += len(chunk.rows)
                if chunk.error is not None:
                    assert chunk.error_line is not None
                    raise ImportFailed(chunk.error_line, chunk.error)
                if progress is not None:
                    progress(size)
            if batch:
                await write(batch)
            if not dry_run:  # a dry run rolls back, which brings the indexes back as they were
                await _rebuild_indexes(conn, deferred)
                await writer.hand_back_search_upkeep()
        except BaseException:
            await transaction.rollback()
            await writer.finish()
            raise
        if dry_run:
            await transaction.rollback()
        else:
            await transaction.commit()
        await writer.finish()
    if report.created + report.updated >= ANALYZE_AFTER_ROWS:
        await _refresh_statistics(engine)
    return report


async def _refresh_statistics(engine: AsyncEngine) -> None:
    """Let the query planner see the new rows now, not when autovacuum gets round to it.

    Without statistics a freshly filled table looks empty, and PostgreSQL then finds a
    key through the (user_id, namespace) index and filters the rest, a scan that grows
    with the table. SQLite reads every index in full (under a second for a million
    rows): sampled statistics made it pick the wrong index for Trash.
    """
    sqlite = engine.dialect.name == "sqlite"
    tables = ["long_term_memory", "memory_event", *([fulltext.TAG_TABLE] if sqlite else [])]
    async with engine.connect() as conn:
        if sqlite:  # ANALYZE reads every index once: no use mapping them into our memory
            mapped = (await conn.exec_driver_sql("PRAGMA mmap_size")).scalar_one()
            await conn.exec_driver_sql("PRAGMA mmap_size = 0")
        for table in tables:
            await conn.exec_driver_sql(f"ANALYZE {table}")
        await conn.commit()
        if sqlite:
            await conn.exec_driver_sql(f"PRAGMA mmap_size = {int(mapped)}")


# --- export ------------------------------------------------------------------------------


async def export_jsonl(
    engine: AsyncEngine,
    *,
    username: str | None = None,
    namespace: str | None = None,
    tags: Sequence[str] = (),
    state: str = "all",
) -> AsyncIterator[bytes]:
    """Yield the matching memories as JSON Lines, oldest id first, streamed from the database."""
    dialect = engine.dialect.name
    query = (
        select(_users.c.username, *(_memories.c[name] for name in FIELDS[1:]))
        .select_from(_memories.join(_users, _users.c.id == _memories.c.user_id))
        .where(state_condition(state, now=utcnow()))
        .order_by(_memories.c.id)
    )
    if username is not None:
        query = query.where(_users.c.username == username)
    if namespace is not None:
        query = query.where(namespace_condition(namespace))
    if tags:
        query = query.where(tags_condition(tags, mode="all", plan=Plan(dialect)))
    async with engine.connect() as conn:
        result = await conn.stream(query.execution_options(yield_per=2000))
        async for partition in result.partitions():
            yield b"".join(export_line(row) for row in partition)
