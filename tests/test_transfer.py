"""Import and export of JSON Lines (services/transfer/), on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from webapp import migrate
from webapp.db import Database, create_engine
from webapp.errors import ImportFailed
from webapp.models import LongTermMemory, MemoryEvent, User
from webapp.services import transfer
from webapp.services.transfer import importer, reading
from webapp.services.users import verify_password
from webapp.settings import Settings

SETTINGS = Settings(secret_key="test")


def record(**overrides: Any) -> dict[str, Any]:
    """One line of the gen_memories.py format, with every field set."""
    base: dict[str, Any] = {
        "user": "alice",
        "namespace": "projects/apollo",
        "key": "launch-date",
        "content": "The launch is on Friday.",
        "tags": ["work", "dates"],
        "importance": 0.75,
        "access_count": 4,
        "last_accessed_at": "2026-10-30T12:00:00Z",
        "expires_at": None,
        "is_deleted": False,
        "deleted_at": None,
        "created_at": "2026-01-02T03:04:05Z",
        "updated_at": "2026-02-03T04:05:06Z",
    }
    base.update(overrides)
    return base


def jsonl(*records: dict[str, Any]) -> bytes:
    """Records as JSON Lines."""
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


async def run_import(engine: AsyncEngine, data: bytes, **kwargs: Any) -> transfer.ImportReport:
    """Import data from memory."""
    return await transfer.import_jsonl(
        Database(engine), source=io.BytesIO(data), settings=SETTINGS, **kwargs
    )


async def export(engine: AsyncEngine, **filters: Any) -> list[dict[str, Any]]:
    """Export as a list of records."""
    chunks = [chunk async for chunk in transfer.export_jsonl(Database(engine), **filters)]
    return [orjson.loads(line) for line in b"".join(chunks).splitlines()]


async def counts(engine: AsyncEngine) -> tuple[int, int, int]:
    """How many memories, users and events the database holds."""
    async with engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            [
                (await conn.execute(select(func.count()).select_from(model))).scalar_one()
                for model in (LongTermMemory, User, MemoryEvent)
            ]
        )


async def events(engine: AsyncEngine) -> list[Any]:
    """Every event, oldest first."""
    async with engine.connect() as conn:
        table = MemoryEvent.__table__  # type: ignore[attr-defined]
        return list(await conn.execute(select(table).order_by(table.c.id)))


async def test_import_keeps_every_field(db: AsyncEngine) -> None:
    source = record(
        expires_at="2030-01-01T00:00:00+02:00",
        is_deleted=True,
        deleted_at="2026-03-01T10:00:00.250000Z",
    )
    report = await run_import(db, jsonl(source))
    assert (report.created, report.updated, report.unchanged, report.users_created) == (1, 0, 0, 1)
    [exported] = await export(db)
    assert exported == {
        **source,
        "expires_at": "2029-12-31T22:00:00Z",
        "deleted_at": "2026-03-01T10:00:00.250000Z",
    }


async def test_import_creates_users_who_cannot_log_in(db: AsyncEngine) -> None:
    await run_import(db, jsonl(record(user="bob"), record(user="carol", key="k2")))
    async with db.connect() as conn:
        rows = list(await conn.execute(select(User.username, User.password_hash)))
    assert sorted(name for name, _ in rows) == ["bob", "carol"]
    assert not any(verify_password(pw_hash, "") for _, pw_hash in rows)


async def test_reimport_reports_unchanged_and_writes_nothing(db: AsyncEngine) -> None:
    data = jsonl(record(), record(key="other"))
    await run_import(db, data)
    before = await counts(db)
    report = await run_import(db, data)
    assert (report.created, report.updated, report.unchanged) == (0, 0, 2)
    assert await counts(db) == before


async def test_changed_line_updates_with_an_event_of_the_diff(db: AsyncEngine) -> None:
    await run_import(db, jsonl(record()))
    report = await run_import(db, jsonl(record(importance=0.1, tags=["Work", "new"])))
    assert (report.created, report.updated, report.unchanged) == (0, 1, 0)
    [memory] = await export(db)
    assert memory["importance"] == 0.1 and memory["tags"] == ["work", "new"]
    create, update = await events(db)
    assert (create.action, create.actor) == ("create", "import")
    assert update.action == "update"
    assert update.changes == {
        "importance": {"old": 0.75, "new": 0.1},
        "tags": {"old": ["work", "dates"], "new": ["work", "new"]},
    }
    async with db.connect() as conn:
        version = (await conn.execute(select(LongTermMemory.version))).scalar_one()
    assert version == 2


async def test_import_can_revive_a_soft_deleted_key(db: AsyncEngine) -> None:
    await run_import(db, jsonl(record(is_deleted=True, deleted_at="2026-05-01T00:00:00Z")))
    report = await run_import(db, jsonl(record()))
    assert report.updated == 1
    [memory] = await export(db, state="active")
    assert memory["is_deleted"] is False and memory["deleted_at"] is None
    assert (await events(db))[-1].changes["is_deleted"] == {"old": True, "new": False}


async def test_repeated_key_in_one_file_the_last_line_wins(db: AsyncEngine) -> None:
    report = await run_import(db, jsonl(record(content="first"), record(content="second")))
    assert (report.created, report.updated) == (1, 1)
    [memory] = await export(db)
    assert memory["content"] == "second"


async def test_every_create_is_audited(db: AsyncEngine) -> None:
    await run_import(db, jsonl(*(record(key=f"k{i}") for i in range(25))), actor="cli:import")
    logged = await events(db)
    assert len(logged) == 25
    assert {(e.action, e.actor) for e in logged} == {("create", "cli:import")}
    async with db.connect() as conn:
        ids = set((await conn.execute(select(LongTermMemory.id))).scalars())
    assert {e.memory_id for e in logged} == ids


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        (b"{not json", "not valid JSON"),
        (orjson.dumps(record(importance=1.5)), "importance"),
        (orjson.dumps(record(importance=None)), "importance must be a number"),
        (orjson.dumps(record(namespace="a//b")), "namespace"),
        (orjson.dumps(record(key=" padded")), "whitespace"),
        (orjson.dumps(record(tags=[f"t{i}" for i in range(33)])), "at most 32"),
        (orjson.dumps(record(content="x" * 65_537)), "65537 bytes"),
        (orjson.dumps(record(colour="blue")), "unknown field 'colour'"),
        (orjson.dumps({k: v for k, v in record().items() if k != "content"}), "'content'"),
        (orjson.dumps(record(created_at="yesterday")), "created_at"),
        (orjson.dumps(record(created_at="2026-01-01T00:00:00")), "timezone"),
        (orjson.dumps(record(access_count=-1)), "access_count"),
        (orjson.dumps(record(is_deleted="no")), "is_deleted"),
        (orjson.dumps(record(deleted_at="2026-01-01T00:00:00Z")), "deleted_at"),
        (orjson.dumps(record(updated_at="2025-01-01T00:00:00Z")), "earlier than created_at"),
        (b"[1, 2]", "JSON object"),
    ],
)
async def test_bad_line_aborts_with_its_number_and_writes_nothing(
    db: AsyncEngine, bad_line: bytes, message: str
) -> None:
    await run_import(db, jsonl(record(key="existing")))
    before = await export(db), await counts(db)
    good = jsonl(record(user="newcomer", key="a"), record(key="existing", content="changed"))
    data = good + b"\n" + bad_line + b"\n" + jsonl(record(key="after"))
    with pytest.raises(ImportFailed) as caught:
        await run_import(db, data)
    assert caught.value.line_no == 4  # the blank line 3 counts
    assert str(caught.value).startswith("line 4: ")
    assert message in str(caught.value)
    assert (await export(db), await counts(db)) == before


async def test_failure_in_a_later_chunk_rolls_back_earlier_batches(
    db: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reading, "CHUNK_BYTES", 2048)
    good = [record(key=f"k{i}") for i in range(200)]
    data = jsonl(*good) + b'{"user": "x"}\n'
    with pytest.raises(ImportFailed, match="line 201: field 'namespace' is required"):
        await run_import(db, data, parallel=True)
    # The parse worker is gone by the time the import has failed (checked before this test
    # lets the loop run again): left to the garbage collector, it outlived the command's
    # event loop ("Event loop is closed" in whatever ran next).
    workers = [
        child
        for child in psutil.Process().children()
        if "webapp.services.parse_worker" in " ".join(child.cmdline())
    ]
    assert workers == []
    assert await counts(db) == (0, 0, 0)


@pytest.mark.parametrize("parallel", [False, True])
async def test_parallel_and_inline_parsing_agree(
    db: AsyncEngine, monkeypatch: pytest.MonkeyPatch, gen_memories: Path, parallel: bool
) -> None:
    monkeypatch.setattr(reading, "CHUNK_BYTES", 16 * 1024)
    data = subprocess.run(
        [sys.executable, str(gen_memories), "--memories", "600", "--users", "7"],
        capture_output=True,
        check=True,
    ).stdout
    report = await run_import(db, data, parallel=parallel)
    assert (report.created, report.lines, report.users_created) == (600, 600, 7)
    exported = await export(db)
    assert [orjson.loads(line) for line in data.splitlines()] == exported


async def test_dry_run_reports_the_real_counts_and_writes_nothing(db: AsyncEngine) -> None:
    await run_import(db, jsonl(record(key="same"), record(key="changed")))
    before = await counts(db)
    data = jsonl(record(key="same"), record(key="changed", content="new text"), record(key="fresh"))
    dry = await run_import(db, data, dry_run=True)
    assert await counts(db) == before
    real = await run_import(db, data)
    assert (dry.created, dry.updated, dry.unchanged) == (real.created, real.updated, real.unchanged)
    assert (real.created, real.updated, real.unchanged) == (1, 1, 1)


async def test_export_filters(db: AsyncEngine) -> None:
    await run_import(
        db,
        jsonl(
            record(user="alice", namespace="projects/apollo", key="a", tags=["x", "y"]),
            record(user="alice", namespace="projects", key="b", tags=["x"]),
            record(user="alice", namespace="projectsx", key="c"),
            record(user="bob", namespace="facts", key="d", tags=["y"]),
            record(user="bob", namespace="facts", key="e", expires_at="2001-01-01T00:00:00Z"),
            record(user="bob", namespace="facts", key="f", is_deleted=True),
        ),
    )

    async def keys(**filters: Any) -> list[str]:
        return [r["key"] for r in await export(db, **filters)]

    assert await keys() == ["a", "b", "c", "d", "e", "f"]
    assert await keys(username="bob") == ["d", "e", "f"]
    assert await keys(namespace="projects") == ["b"]
    assert await keys(namespace="projects/") == ["a", "b"]
    assert await keys(tags=["x"]) == ["a", "b"]
    assert await keys(tags=["X", "y"]) == ["a"]
    assert await keys(state="active") == ["a", "b", "c", "d"]
    assert await keys(state="expired") == ["e"]
    assert await keys(state="deleted") == ["f"]


async def test_export_import_export_round_trip(
    db: AsyncEngine, gen_memories: Path, fresh_database_url: str
) -> None:
    data = subprocess.run(
        [sys.executable, str(gen_memories), "--memories", "500", "--users", "9", "--seed", "3"],
        capture_output=True,
        check=True,
    ).stdout
    await run_import(db, data)
    first = b"".join([chunk async for chunk in transfer.export_jsonl(Database(db))])

    fresh = create_engine(Settings(database_url=fresh_database_url, secret_key="test"))
    try:
        await migrate.upgrade(fresh)
        await run_import(fresh, first)
        second = b"".join([chunk async for chunk in transfer.export_jsonl(Database(fresh))])
    finally:
        await fresh.dispose()
    assert second == first
    assert len(first.splitlines()) == 500


@pytest.mark.parametrize("outcome", ["committed", "dry run", "failed"])
async def test_indexes_deferred_into_an_empty_table_are_all_back(
    db: AsyncEngine, outcome: str
) -> None:
    data = jsonl(*(record(key=f"k{i}") for i in range(50)))
    if outcome == "committed":
        await run_import(db, data)
    elif outcome == "dry run":
        await run_import(db, data, dry_run=True)
    else:
        with pytest.raises(ImportFailed):
            await run_import(db, data + b"{}\n")
    assert await migrate.schema_differences(db) == []
    # and they are used: a second import into the non-empty table takes the normal path
    report = await run_import(db, jsonl(record(key="k1", content="new"), record(key="extra")))
    assert report.created + report.updated == 2
    assert await migrate.schema_differences(db) == []


async def test_a_large_import_leaves_the_planner_statistics_and_postgresqls_visibility_map(
    db: AsyncEngine,
) -> None:
    """After ANALYZE_AFTER_ROWS rows the tables are analysed, and on PostgreSQL vacuumed:
    until a vacuum marks the new pages all-visible, counting them (the dashboard, the
    users page) reads the whole table, and autovacuum may be off or far behind."""
    rows = importer.ANALYZE_AFTER_ROWS
    await run_import(db, jsonl(*(record(key=f"k{i}") for i in range(rows))))
    async with db.connect() as conn:
        if db.dialect.name == "sqlite":
            analysed = "SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'long_term_memory'"
            assert (await conn.exec_driver_sql(analysed)).scalar()
            return
        seen = await conn.exec_driver_sql(
            "SELECT reltuples, relallvisible, relpages FROM pg_class"
            " WHERE relname = 'long_term_memory'"
        )
        tuples, visible, pages = seen.one()
    assert tuples >= rows
    assert pages > 0 and visible == pages
