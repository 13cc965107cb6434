"""The SQLite engine's connections: one trip to the driver's thread a statement, and
everything SQLAlchemy reads from a cursor still right (rows, streams, counts, errors)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from webapp import sqlite_connection
from webapp.db import Database, create_engine, write_connection
from webapp.settings import Settings

ROWS = sqlite_connection.PREFETCH_ROWS * 2 + 345
"""More rows than two prefetches, and not a multiple of one."""


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """The app's engine on a fresh SQLite file with a table of ROWS numbered rows."""
    engine = create_engine(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"))
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT UNIQUE)"))
        result = await conn.execute(
            text("INSERT INTO item (id, name) VALUES (:id, :name)"),
            [{"id": n, "name": f"item {n}"} for n in range(1, ROWS + 1)],
        )
        assert result.rowcount == ROWS
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The name of every call sent to an aiosqlite connection's thread, in order."""
    sent: list[str] = []
    original = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(getattr(fn, "func", fn).__name__)
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    yield sent


async def test_the_engine_uses_one_trip_connections(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        assert isinstance(raw.driver_connection, sqlite_connection.OneTripConnection)


async def test_a_read_is_one_trip_and_returning_its_connection_none(
    engine: AsyncEngine, trips: list[str]
) -> None:
    """A page's reads: each statement one trip; handing the connection back (the pool's
    rollback of a connection without a transaction) none. aiosqlite alone makes 4 + 1."""
    database = Database(engine)
    async with database.pinned_reads():
        async with database.read() as session:
            await session.execute(text("SELECT 1"))  # connect outside the count
        trips.clear()
        async with database.read() as session:
            names = (await session.execute(text("SELECT name FROM item LIMIT 51"))).scalars()
            assert len(names.all()) == 51
            count = await session.execute(text("SELECT count(*) FROM item"))
            assert count.scalar_one() == ROWS
    assert trips == ["_run_statement", "_run_statement"]


async def test_a_write_transaction_is_a_trip_per_statement(
    engine: AsyncEngine, trips: list[str]
) -> None:
    """BEGIN IMMEDIATE travels with the statement, then COMMIT: two trips, and the write
    is there."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    trips.clear()
    async with write_connection(engine) as conn:
        await conn.execute(text("UPDATE item SET name = 'renamed' WHERE id = 1"))
        await conn.execute(text("UPDATE item SET name = 'renamed again' WHERE id = 2"))
    assert trips == ["_run_statement", "_run_statement", "commit"]
    async with engine.connect() as conn:
        names = await conn.execute(text("SELECT name FROM item WHERE id IN (1, 2) ORDER BY id"))
        assert names.scalars().all() == ["renamed", "renamed again"]


async def test_a_transaction_without_statements_makes_no_trip(
    engine: AsyncEngine, trips: list[str]
) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    trips.clear()
    async with write_connection(engine):
        pass
    assert trips == []


async def test_the_write_lock_is_taken_with_the_first_statement(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """Once a write transaction has run a statement, it holds SQLite's write lock (as
    BEGIN IMMEDIATE would): another writer is refused until it commits, and a writer
    that cannot get the lock fails at its first statement, having written nothing."""
    other = create_engine(
        Settings(
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
            sqlite_busy_timeout_ms=0,
        )
    )
    try:
        async with write_connection(engine) as conn:
            await conn.execute(text("SELECT 1"))  # reads only, yet the lock is ours
            with pytest.raises(OperationalError, match="locked"):
                async with write_connection(other) as blocked:
                    await blocked.execute(text("UPDATE item SET name = 'lost' WHERE id = 3"))
        async with other.connect() as check:
            name = await check.execute(text("SELECT name FROM item WHERE id = 3"))
            assert name.scalar_one() == "item 3"
    finally:
        await other.dispose()


async def test_results_longer_than_a_prefetch_come_back_whole_and_in_order(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as conn:
        ids = (await conn.execute(text("SELECT id FROM item ORDER BY id"))).scalars().all()
    assert ids == list(range(1, ROWS + 1))


async def test_streamed_results_come_in_chunks_with_every_row(
    engine: AsyncEngine, trips: list[str]
) -> None:
    """An export streams: every row once, in order, fetched a chunk at a time after the
    first PREFETCH_ROWS, never all in one trip."""
    chunks: list[int] = []
    seen: list[int] = []
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
        trips.clear()
        result = await conn.stream(text("SELECT id FROM item ORDER BY id"))
        async for partition in result.partitions(700):
            chunks.append(len(partition))
            seen.extend(row[0] for row in partition)
    assert seen == list(range(1, ROWS + 1))
    assert chunks == [700, 700, 700, ROWS - 2100]
    assert trips[0] == "_run_statement" and trips.count("_fetch_more") >= 2


async def test_a_stream_closed_early_leaves_the_connection_usable(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        result = await conn.stream(text("SELECT id FROM item ORDER BY id"))
        first = await result.fetchmany(3)
        await result.close()
        assert [row[0] for row in first] == [1, 2, 3]
        assert (await conn.execute(text("SELECT count(*) FROM item"))).scalar() == ROWS


async def test_insert_reports_lastrowid_and_update_its_rowcount(engine: AsyncEngine) -> None:
    async with write_connection(engine) as conn:
        inserted = await conn.execute(text("INSERT INTO item (name) VALUES ('new')"))
        assert inserted.lastrowid == ROWS + 1
        updated = await conn.execute(text("UPDATE item SET name = name || '!' WHERE id <= 10"))
        assert updated.rowcount == 10


async def test_a_failed_statement_raises_and_its_transaction_writes_nothing(
    engine: AsyncEngine,
) -> None:
    with pytest.raises(IntegrityError):
        async with write_connection(engine) as conn:
            await conn.execute(text("UPDATE item SET name = 'first' WHERE id = 1"))
            await conn.execute(text("INSERT INTO item (name) VALUES ('item 2')"))
    with pytest.raises(OperationalError, match="no such table"):
        async with engine.connect() as conn:
            await conn.execute(text("SELECT * FROM missing"))
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT name FROM item WHERE id = 1"))).scalar() == (
            "item 1"
        )


def test_engine_creator_passes_the_url_and_its_options_to_sqlite(tmp_path: Path) -> None:
    """The creator opens the file the URL names, with the URL's and the given options."""
    path = tmp_path / "options.db"
    creator = sqlite_connection.engine_creator(
        f"sqlite+aiosqlite:///{path}?check_same_thread=true", timeout=2.5
    )
    assert creator.args == (str(path),)  # type: ignore[attr-defined]
    assert creator.keywords == {"check_same_thread": True, "timeout": 2.5}  # type: ignore[attr-defined]
