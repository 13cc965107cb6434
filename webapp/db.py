"""Async engines and sessions for SQLite and PostgreSQL, with the settings SPEC 2 asks for."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import orjson
from fastapi import Request
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from webapp.formats import dump_json
from webapp.settings import Settings

WRITE_OPTION = "memory_admin_write"
"""Connection execution option: on SQLite, open the transaction with BEGIN IMMEDIATE."""
SINGLE_READS_OPTION = "memory_admin_single_reads"
"""Connection execution option: on SQLite, issue no BEGIN; each statement reads its own
snapshot. For Database.read() sessions, whose statements do not need one snapshot
together: a BEGIN costs three round trips to the driver's thread, and a list page
opens four read sessions."""


def create_engine(settings: Settings) -> AsyncEngine:
    """An async engine for settings.database_url; nothing connects until first use."""
    common: dict[str, Any] = {"json_serializer": dump_json, "json_deserializer": orjson.loads}
    if settings.is_sqlite:
        path = settings.sqlite_path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            settings.database_url,
            connect_args={"timeout": settings.sqlite_busy_timeout_ms / 1000},
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_timeout=settings.db_pool_timeout,
            **common,
        )
        _configure_sqlite(engine, settings)
        return engine
    return create_async_engine(
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
        # Reads of a large table mostly fetch single rows by id: through the memory map
        # they cost a memory access instead of a system call each; the page cache keeps
        # the hot index pages of each pooled connection.
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
    async with write_connection(engine) as conn, sessionmaker(bind=conn) as session:
        yield session
        await session.flush()


async def get_async_session(request: Request) -> AsyncIterator[AsyncSession]:
    """FastAPI dependency: one session per request from the app's sessionmaker."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session:
        yield session


class Database:
    """The engine and its sessions; services open one short session per operation."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessionmaker = create_sessionmaker(engine)
        self._read_sessionmaker = create_sessionmaker(
            engine.execution_options(**{SINGLE_READS_OPTION: True})
        )

    @property
    def dialect(self) -> str:
        """'sqlite' or 'postgresql'."""
        return self.engine.dialect.name

    def read(self) -> AsyncSession:
        """A session for reads that never commits (on SQLite each statement reads its own
        snapshot: see SINGLE_READS_OPTION)."""
        return self._read_sessionmaker()

    def write(self) -> AbstractAsyncContextManager[AsyncSession]:
        """A session in a write transaction, committed when the block ends without error."""
        return write_session(self.sessionmaker)
