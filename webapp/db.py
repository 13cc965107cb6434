"""Async engines and sessions for SQLite and PostgreSQL: pool, pragmas, write transactions."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, nullcontext, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from webapp import sqlite_connection
from webapp.db_errors import discard_lost_connections
from webapp.formats import dump_json
from webapp.settings import DEFAULT_SEARCH_LANGUAGE, SearchLanguage, Settings

WRITE_OPTION = "memory_admin_write"
"""Connection execution option: on SQLite, open the transaction with BEGIN IMMEDIATE."""
SINGLE_READS_OPTION = "memory_admin_single_reads"
"""Connection execution option: on SQLite, issue no BEGIN; each statement reads its own
snapshot. For Database.read() sessions, whose statements do not need one snapshot
together: a BEGIN costs three round trips to the driver's thread. (PostgreSQL's read
sessions get the same from AUTOCOMMIT.)"""


def create_engine(settings: Settings) -> AsyncEngine:
    """An async engine for settings.database_url; nothing connects until first use."""
    common: dict[str, Any] = {"json_serializer": dump_json, "json_deserializer": orjson.loads}
    if settings.is_sqlite:
        path = settings.sqlite_path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            settings.database_url,
            # One trip to aiosqlite's thread a statement instead of four (see the module).
            async_creator=sqlite_connection.engine_creator(
                settings.database_url, timeout=settings.sqlite_busy_timeout_ms / 1000
            ),
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_timeout=settings.db_pool_timeout,
            # The most recently used connection first: each commit empties the page cache
            # of every other connection, so the one that wrote last reads warm. In turn
            # (the default), a search after a write read its text matches cold: 17.5 ms
            # instead of 10.8 (medians in the process, a million rows).
            pool_use_lifo=True,
            **common,
        )
        _configure_sqlite(engine, settings)
        return engine
    engine = create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=True,
        pool_timeout=settings.db_pool_timeout,
        connect_args={
            "timeout": settings.db_connect_timeout,
            # PostgreSQL's JIT costs more than it saves on our short, indexed queries. The
            # hot part of the table is expected in memory or on SSD, where a random read
            # costs about a sequential one: with the default of 4, a capped count of one
            # user's memories reads that user's whole index range into a bitmap first
            # (15 ms at a million rows) instead of stopping at the cap (1 ms).
            "server_settings": {"jit": "off", "timezone": "UTC", "random_page_cost": "1.1"},
        },
        **common,
    )
    discard_lost_connections(engine)
    return engine


def _configure_sqlite(engine: AsyncEngine, settings: Settings) -> None:
    """WAL, busy_timeout, foreign keys; transactions begun by us, writers with BEGIN IMMEDIATE.

    pysqlite's own transaction handling begins lazily and deferred, so a reader that later
    writes can fail with 'database is locked' when another writer got there first. Taking
    over BEGIN lets write transactions take the write lock up front, where busy_timeout
    makes them wait their turn instead of failing.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(settings.sqlite_busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # Statement journals and RETURNING's buffers in memory: with the default, every
        # upsert created, wrote and deleted a file in /var/tmp (its trigger-fed full-text
        # index makes the statement journal outgrow its 64 KiB in-memory start).
        cursor.execute("PRAGMA temp_store=MEMORY")
        # Off by default (SQLITE_MMAP_MB): a memory map saves read pages 10-15% on a
        # database nobody writes to, but once agents write, every commit that grows the
        # file remaps it for the other connections, whose next reads fault their pages
        # back in (at 1M rows: API search p95 30 -> 22 ms and upserts 478 -> 550/s
        # without it). The page cache keeps each pooled connection's hot pages.
        cursor.execute(f"PRAGMA mmap_size={settings.sqlite_mmap_mb * 1024 * 1024}")
        cursor.execute(f"PRAGMA cache_size=-{settings.sqlite_cache_mb * 1024}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get(SINGLE_READS_OPTION, False):
            return
        immediate = options.get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded attributes after commit (no lazy reload under async)."""
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def write_connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection in a write transaction (BEGIN IMMEDIATE on SQLite), committed on success."""
    async with engine.connect() as conn:
        conn = await conn.execution_options(**{WRITE_OPTION: True})
        async with conn.begin():
            yield conn


@asynccontextmanager
async def write_session(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A session in a write transaction (BEGIN IMMEDIATE on SQLite), committed on success."""
    engine = sessionmaker.kw["bind"]
    async with engine.connect() as conn, _write_transaction(conn, sessionmaker) as session:
        yield session


@asynccontextmanager
async def _write_transaction(
    conn: AsyncConnection, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[AsyncSession]:
    """A session in a write transaction on conn, already checked out of the pool."""
    conn = await conn.execution_options(**{WRITE_OPTION: True})
    async with conn.begin(), sessionmaker(bind=conn) as session:
        yield session
        await _flush_pending(session)


async def _flush_pending(session: AsyncSession) -> None:
    """Flush what the session holds, if anything: a write made of Core statements has
    nothing to flush, and an empty flush still costs a trip through SQLAlchemy's greenlet."""
    if session.new or session.dirty or session.deleted:
        await session.flush()


@asynccontextmanager
async def _sqlite_write_on(
    connection: AsyncConnection, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[AsyncSession]:
    """A write transaction (BEGIN IMMEDIATE ... COMMIT) on a pinned SQLite connection,
    whose own SQLAlchemy transaction is the reads' (it sends no SQL): the session joins
    it, and the transaction is committed, or rolled back, on the driver's connection."""
    driver = (
        connection.sync_connection.connection.driver_connection
        if connection.sync_connection
        else None
    )
    assert isinstance(driver, sqlite_connection.OneTripConnection)
    driver.defer_begin("BEGIN IMMEDIATE")  # sent with the first statement (see the module)
    try:
        async with sessionmaker(bind=connection) as session:
            yield session
            await _flush_pending(session)
    except BaseException:
        await driver.rollback()
        raise
    try:
        await driver.commit()
    except sqlite3.Error as exc:
        # A full disk or a lost lock fails the COMMIT itself, which SQLAlchemy does not
        # wrap: end the transaction, and raise it as SQLAlchemy raises a statement's.
        with suppress(sqlite3.Error):
            await driver.rollback()
        raise DBAPIError.instance("COMMIT", None, exc, sqlite3.Error) from exc


@asynccontextmanager
async def _postgresql_write_on(
    connection: AsyncConnection, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[AsyncSession]:
    """A write transaction (BEGIN ... COMMIT) on a pinned PostgreSQL connection. It reads
    in AUTOCOMMIT, where SQLAlchemy's transaction sends no SQL: the session joins that,
    and the transaction is opened and ended here in SQL."""
    await connection.exec_driver_sql("BEGIN")
    try:
        async with sessionmaker(bind=connection) as session:
            yield session
            await _flush_pending(session)
        await connection.exec_driver_sql("COMMIT")
    except BaseException:
        await _roll_back_or_discard(connection)
        raise


async def _roll_back_or_discard(connection: AsyncConnection) -> None:
    """ROLLBACK what _postgresql_write_on began. If even that fails (the connection is
    lost, or the task is being cancelled), the connection is invalidated, so the pool
    never hands out one left in a transaction; the error that caused the rollback is the
    one the caller sees, unless this is a cancellation."""
    try:
        await connection.exec_driver_sql("ROLLBACK")
    except BaseException as exc:
        await connection.invalidate()
        if not isinstance(exc, Exception):
            raise


@dataclass
class _PinnedReads:
    """The connection a request's read sessions share, opened by the first of them."""

    database: Database
    task: asyncio.Task[Any] | None
    connection: AsyncConnection | None = None


_pinned_reads: ContextVar[_PinnedReads | None] = ContextVar(
    "memory_admin_pinned_reads", default=None
)


class Database:
    """The engine and its sessions; services open one short session per operation.

    Read sessions never hold a transaction between statements (see SINGLE_READS_OPTION),
    and inside `pinned_reads()` they all share one connection: a page that checks the
    session, reads a page of rows, counts them and names their owners takes one
    connection from the pool instead of four (each checkout costs a ping and a reset).
    """

    def __init__(
        self, engine: AsyncEngine, *, search_language: SearchLanguage = DEFAULT_SEARCH_LANGUAGE
    ) -> None:
        self.engine = engine
        self.search_language = search_language
        """How the full-text index reads words (SEARCH_LANGUAGE); queries are written for it."""
        self.sessionmaker = create_sessionmaker(engine)
        read_options: dict[str, Any] = (
            {SINGLE_READS_OPTION: True}
            if engine.dialect.name == "sqlite"
            else {"isolation_level": "AUTOCOMMIT"}
        )
        self._read_engine = engine.execution_options(**read_options)
        self._read_sessionmaker = create_sessionmaker(self._read_engine)
        self._one_writer = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        self._write_on = (
            _sqlite_write_on if engine.dialect.name == "sqlite" else _postgresql_write_on
        )

    @property
    def dialect(self) -> str:
        """'sqlite' or 'postgresql'."""
        return self.engine.dialect.name

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reads that never commits; each statement reads the latest
        committed data (no snapshot spans statements). Inside pinned_reads(), on the
        pinned connection."""
        connection = await self._pinned_connection()
        if connection is None:
            async with self._read_sessionmaker() as session:
                yield session
            return
        async with self._read_sessionmaker(bind=connection) as session:
            yield session

    @asynccontextmanager
    async def read_connection(self) -> AsyncIterator[AsyncConnection]:
        """A connection for Core reads, as read() sessions have them, without the cost of
        a session: for the lookups every request makes (an API token's)."""
        connection = await self._pinned_connection()
        if connection is not None:
            yield connection
            return
        async with self._read_engine.connect() as connection:
            yield connection

    async def _pinned_connection(self) -> AsyncConnection | None:
        """This task's pinned connection (opened now if it has none yet), or None outside
        pinned_reads()."""
        pinned = _pinned_reads.get()
        if pinned is None or pinned.database is not self or pinned.task is not _current_task():
            return None
        if pinned.connection is None:
            pinned.connection = await self._read_engine.connect()
        if not pinned.connection.in_transaction():
            # An outer transaction (no BEGIN is sent: see the read options) that the
            # sessions join, so closing each of them does not send a ROLLBACK. A session
            # whose flush fails rolls it back: begun again here, or the next write's
            # session would own its transaction and roll it back when closed.
            await pinned.connection.begin()
        return pinned.connection

    @asynccontextmanager
    async def pinned_reads(self) -> AsyncIterator[None]:
        """Let the read sessions of this task share one connection until the block ends.

        Sessions opened by other tasks (asyncio.gather, for one) get their own, so two
        statements never run on one connection at once. The connection is taken by the
        first read, so a request that reads nothing takes none.
        """
        pinned = _PinnedReads(database=self, task=_current_task())
        token = _pinned_reads.set(pinned)
        try:
            yield
        finally:
            _pinned_reads.reset(token)
            if pinned.connection is not None:
                await pinned.connection.close()

    @contextmanager
    def unpinned_reads(self) -> Iterator[None]:
        """Inside pinned_reads(), let the block's reads take a connection of their own,
        handed back at once: for a request that passes its work to another task (MCP's
        tool calls run in the SDK's tasks), whose pinned connection would otherwise sit
        idle while that task takes a second one."""
        token = _pinned_reads.set(None)
        try:
            yield
        finally:
            _pinned_reads.reset(token)

    @asynccontextmanager
    async def write(self, *, one_statement: bool = False) -> AsyncIterator[AsyncSession]:
        """A session in a write transaction, committed when the block ends without error.

        one_statement: the block executes a single statement (an UPDATE ... RETURNING, say),
        which PostgreSQL then runs as its own transaction, in AUTOCOMMIT as reads are. Its
        row locks are held while the server runs it, not for the round trips of a BEGIN
        and a COMMIT: 1,000 concurrent recalls of 100 memories waited in line for each
        other's COMMIT, whose trip back through a busy event loop kept the row locked, and
        half of them outwaited the pool timeout. (SQLite writes as without it.)

        On SQLite, this process's writers take turns on a lock first. SQLite lets one
        writer in at a time anyway, and a writer that finds the database locked waits in
        its busy handler, which sleeps in growing steps (up to 100 ms) instead of waking
        when the lock is free: four clients writing at once saw a p99 of a second. Other
        processes (more workers, the CLI) still meet at BEGIN IMMEDIATE and busy_timeout.

        Inside pinned_reads(), a write runs on the pinned connection, so a request holds
        one pooled connection at most. With a second one for its writes, a burst of
        requests had every connection pinned by requests waiting for a second: 100 recalls
        at once on PostgreSQL waited out the pool timeout and answered 500. On SQLite,
        also, a write by another connection empties every other connection's page cache,
        so a request that read on one connection and wrote on another found its next read
        cold (an agent's search, which ranks and then counts the access, took 21 ms
        instead of 13).
        """
        if one_statement and self._one_writer is None:
            async with self.read() as session:
                yield session
            return
        # The connection first, then the turn: a writer that waited for a pooled
        # connection while holding the turn deadlocked with requests holding every pooled
        # connection while waiting for the turn (the background embedder's write, outside
        # pinned_reads, during 100 recalls at once: 60 s, then 503s).
        connection = await self._pinned_connection()
        if connection is not None:
            async with self._one_writer or nullcontext():
                async with self._write_on(connection, self.sessionmaker) as session:
                    yield session
            return
        async with self.engine.connect() as unpinned:
            async with self._one_writer or nullcontext():
                async with _write_transaction(unpinned, self.sessionmaker) as session:
                    yield session


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None
