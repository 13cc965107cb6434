"""import_jsonl: JSON Lines into the database in one transaction, new rows in bulk."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from sqlalchemy import Index, bindparam, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.schema import CreateIndex, DropIndex

from webapp.db import WRITE_OPTION, Database
from webapp.errors import ImportFailed
from webapp.migrate import include_object_for
from webapp.models import LongTermMemory, MemoryEvent, User
from webapp.services import fulltext, namespace_summary
from webapp.services.jsonl import UPDATABLE_COLUMNS, ParseOptions, canonical, json_value
from webapp.services.transfer.reading import parsed_chunks
from webapp.services.transfer.writers import Actor, PostgresWriter, SqliteWriter
from webapp.services.users import UNUSABLE_PASSWORD
from webapp.settings import Settings
from webapp.types import utcnow

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


async def _update_existing(
    conn: AsyncConnection, rows: Sequence[tuple[Any, ...]], actor: Actor, report: ImportReport
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
            await namespace_summary.suspend_for_bulk_load(conn)
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
        await namespace_summary.resume_after_bulk_load(conn)


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
    db: Database,
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
    engine = db.engine
    report = ImportReport(dry_run=dry_run)
    who = Actor(name=actor, user_id=actor_user_id, now=utcnow())
    dialect = engine.dialect.name
    options = ParseOptions(
        for_sqlite=dialect == "sqlite",
        content_max_bytes=settings.content_max_bytes,
        now=who.now,
    )
    async with engine.connect() as plain_conn:
        conn = await plain_conn.execution_options(**{WRITE_OPTION: True})
        driver = (await conn.get_raw_connection()).driver_connection
        writer_class = SqliteWriter if dialect == "sqlite" else PostgresWriter
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
            # aclosing: a bad line raises mid-stream, and the parse worker must be stopped
            # and its pipes closed now, not by the garbage collector after the loop ends.
            async with aclosing(parsed_chunks(source, options, parallel)) as chunks:
                async for chunk, size in chunks:
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

    PostgreSQL gets VACUUM (ANALYZE): until a vacuum marks the new pages all-visible, an
    index-only scan reads the table too, and counting a million imported rows took 0.7 s
    instead of 0.09 s (the dashboard and the users page count that way). Where
    autovacuum is off, or behind, that lasted until someone ran VACUUM by hand.
    """
    sqlite = engine.dialect.name == "sqlite"
    tables = ["long_term_memory", "memory_event", *([fulltext.TAG_TABLE] if sqlite else [])]
    if not sqlite:
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")  # VACUUM needs it
            for table in tables:
                await conn.exec_driver_sql(f"VACUUM (ANALYZE) {table}")
        return
    async with engine.connect() as conn:
        # ANALYZE reads every index once: no use mapping them into our memory
        mapped = (await conn.exec_driver_sql("PRAGMA mmap_size")).scalar_one()
        await conn.exec_driver_sql("PRAGMA mmap_size = 0")
        for table in tables:
            await conn.exec_driver_sql(f"ANALYZE {table}")
        await conn.commit()
        await conn.exec_driver_sql(f"PRAGMA mmap_size = {int(mapped)}")
