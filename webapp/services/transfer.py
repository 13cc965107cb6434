"""Import and export of memories as JSON Lines, in the format of gen_memories.py.

Import streams the file in batches through a staging table: each batch is bulk-loaded
(executemany on SQLite, COPY on PostgreSQL), matched against existing rows, then merged
with one INSERT ... ON CONFLICT and audited with one set-based INSERT of events, so every
index is maintained by the database itself. The whole import is one transaction: a bad
line raises ImportFailed and nothing is written; a dry run does the same work and rolls
back, so its counts are exactly what the real run would report.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

import orjson
from sqlalchemy import bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from webapp.db import dump_json
from webapp.errors import ImportFailed
from webapp.models import LongTermMemory, User
from webapp.services.filters import namespace_condition, state_condition, tags_condition
from webapp.services.users import UNUSABLE_PASSWORD
from webapp.types import UTCDateTime, sqlite_datetime_text, utcnow
from webapp.validation import (
    parse_utc,
    validate_content,
    validate_importance,
    validate_key,
    validate_namespace,
    validate_tags,
    validate_username,
)

FIELDS = (
    "user",
    "namespace",
    "key",
    "content",
    "tags",
    "importance",
    "access_count",
    "last_accessed_at",
    "expires_at",
    "is_deleted",
    "deleted_at",
    "created_at",
    "updated_at",
)
REQUIRED_FIELDS = ("user", "namespace", "key", "content")
_KNOWN_FIELDS = frozenset(FIELDS)

# Staging columns, in load order; the merge copies all but user_id's lookup helper.
_STAGED = (
    "user_id",
    "namespace",
    "key",
    "content",
    "tags",
    "importance",
    "access_count",
    "last_accessed_at",
    "expires_at",
    "is_deleted",
    "deleted_at",
    "created_at",
    "updated_at",
)
# Fields an import may change on an existing row, compared to decide updated vs unchanged.
_COMPARED = _STAGED[3:]

BATCH_ROWS = 5000
IMPORT_ACTOR = "import"

ProgressCallback = Callable[[int], None]


@dataclass
class ImportReport:
    """What an import did (or, for a dry run, would do)."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    users_created: int = 0
    lines: int = 0
    dry_run: bool = False


@dataclass
class _Batch:
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    keys: set[tuple[str, str, str]] = field(default_factory=set)


class _RecordParser:
    """Validates one JSON line with the SPEC 1 rules and returns its staging row."""

    def __init__(self, *, for_sqlite: bool, content_max_bytes: int, now: datetime) -> None:
        self._for_sqlite = for_sqlite
        self._content_max_bytes = content_max_bytes
        self._now = now
        self._usernames: set[str] = set()
        self._namespaces: set[str] = set()

    def parse(self, line: bytes) -> tuple[Any, ...]:
        """The staging row for a line, with the username in place of user_id."""
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON ({exc})") from None
        if type(record) is not dict:
            raise ValueError("each line must be a JSON object")
        if not record.keys() <= _KNOWN_FIELDS:
            unknown = sorted(record.keys() - _KNOWN_FIELDS)
            raise ValueError(f"unknown field {unknown[0]!r}; known fields: {', '.join(FIELDS)}")
        for name in REQUIRED_FIELDS:
            if record.get(name) is None:
                raise ValueError(f"field {name!r} is required")

        username = record["user"]
        if username not in self._usernames:
            self._usernames.add(validate_username(username))
        namespace = record["namespace"]
        if namespace not in self._namespaces:
            self._namespaces.add(validate_namespace(namespace))
        key = validate_key(record["key"])
        content = validate_content(record["content"], self._content_max_bytes)
        tags = validate_tags(record.get("tags"))
        importance = validate_importance(record.get("importance", 0.5))
        access_count = record.get("access_count", 0)
        if type(access_count) is not int or access_count < 0:
            raise ValueError("access_count must be a whole number >= 0")
        is_deleted = record.get("is_deleted", False)
        if type(is_deleted) is not bool:
            raise ValueError("is_deleted must be true or false")

        last_accessed_at = parse_utc(record.get("last_accessed_at"), "last_accessed_at")
        expires_at = parse_utc(record.get("expires_at"), "expires_at")
        deleted_at = parse_utc(record.get("deleted_at"), "deleted_at")
        created_at = parse_utc(record.get("created_at"), "created_at") or self._now
        updated_at = parse_utc(record.get("updated_at"), "updated_at") or created_at
        if updated_at < created_at:
            raise ValueError("updated_at is earlier than created_at")
        if deleted_at is not None and not is_deleted:
            raise ValueError("deleted_at is set but is_deleted is false")
        if is_deleted and deleted_at is None:
            deleted_at = self._now  # the retention period starts now, never in the past

        if self._for_sqlite:
            return (
                username,
                namespace,
                key,
                content,
                dump_json(tags),
                importance,
                access_count,
                _sqlite_time(last_accessed_at),
                _sqlite_time(expires_at),
                int(is_deleted),
                _sqlite_time(deleted_at),
                sqlite_datetime_text(created_at),
                sqlite_datetime_text(updated_at),
            )
        return (
            username,
            namespace,
            key,
            content,
            dump_json(tags),
            importance,
            access_count,
            last_accessed_at,
            expires_at,
            is_deleted,
            deleted_at,
            created_at,
            updated_at,
        )


def _sqlite_time(value: datetime | None) -> str | None:
    return None if value is None else sqlite_datetime_text(value)


def _read_batches(
    source: IO[bytes],
    parser: _RecordParser,
    report: ImportReport,
    progress: ProgressCallback | None,
) -> Iterable[_Batch]:
    """Parsed batches of at most BATCH_ROWS rows; a key repeated in one batch starts a new one.

    (PostgreSQL refuses to upsert one row twice in a statement, and later lines must win.)
    """
    batch = _Batch()
    line_no = 0
    consumed = 0
    for line in source:
        line_no += 1
        consumed += len(line)
        if not line.strip():
            continue
        try:
            row = parser.parse(line)
        except ValueError as exc:
            raise ImportFailed(line_no, str(exc)) from None
        identity = (row[0], row[1], row[2])
        if identity in batch.keys:
            yield batch
            batch = _Batch()
        batch.rows.append(row)
        batch.keys.add(identity)
        report.lines += 1
        if len(batch.rows) >= BATCH_ROWS:
            if progress is not None:
                progress(consumed)
                consumed = 0
            yield batch
            batch = _Batch()
    if batch.rows:
        yield batch
    if progress is not None and consumed:
        progress(consumed)


class _Stager:
    """The per-dialect parts of an import: staging table, bulk load, event rows."""

    def __init__(self, conn: AsyncConnection, driver: Any, dialect: str) -> None:
        self.conn = conn
        self.driver = driver
        self.dialect = dialect

    async def create_staging(self) -> None:
        if self.dialect == "sqlite":
            await self.conn.exec_driver_sql(
                "CREATE TEMP TABLE IF NOT EXISTS import_batch ("
                "user_id INTEGER NOT NULL, namespace TEXT NOT NULL, key TEXT NOT NULL, "
                "content TEXT NOT NULL, tags TEXT NOT NULL, importance REAL NOT NULL, "
                "access_count INTEGER NOT NULL, last_accessed_at TEXT, expires_at TEXT, "
                "is_deleted INTEGER NOT NULL, deleted_at TEXT, created_at TEXT NOT NULL, "
                "updated_at TEXT NOT NULL, existing_id INTEGER)"
            )
            await self.conn.exec_driver_sql("DELETE FROM import_batch")
        else:
            await self.conn.exec_driver_sql(
                "CREATE TEMP TABLE import_batch ("
                "user_id integer NOT NULL, namespace text NOT NULL, key text NOT NULL, "
                "content text NOT NULL, tags jsonb NOT NULL, importance double precision NOT NULL, "
                "access_count integer NOT NULL, last_accessed_at timestamptz, "
                "expires_at timestamptz, is_deleted boolean NOT NULL, deleted_at timestamptz, "
                "created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, "
                "existing_id integer) ON COMMIT DROP"
            )

    async def drop_staging(self) -> None:
        if self.dialect == "sqlite":
            await self.conn.exec_driver_sql("DROP TABLE IF EXISTS temp.import_batch")

    async def load(self, rows: Sequence[tuple[Any, ...]]) -> None:
        if self.dialect == "sqlite":
            await self.conn.exec_driver_sql("DELETE FROM import_batch")
            marks = ", ".join("?" * len(_STAGED))
            await self.driver.executemany(
                f"INSERT INTO import_batch ({', '.join(_STAGED)}) VALUES ({marks})", rows
            )
        else:
            await self.conn.exec_driver_sql("TRUNCATE import_batch")
            await self.driver.copy_records_to_table(
                "import_batch", records=rows, columns=list(_STAGED)
            )

    async def insert_update_events(self, events: Sequence[tuple[Any, ...]]) -> None:
        columns = (
            "memory_id",
            "user_id",
            "actor",
            "actor_user_id",
            "action",
            "changes",
            "created_at",
        )
        if self.dialect == "sqlite":
            marks = ", ".join("?" * len(columns))
            await self.driver.executemany(
                f"INSERT INTO memory_event ({', '.join(columns)}) VALUES ({marks})", events
            )
        else:
            await self.driver.copy_records_to_table(
                "memory_event", records=events, columns=list(columns)
            )

    def time_value(self, value: datetime) -> Any:
        return sqlite_datetime_text(value) if self.dialect == "sqlite" else value

    def event_value(self, name: str, value: Any) -> Any:
        """A staged or stored value as it appears in an event's JSON."""
        if value is None:
            return None
        if name == "tags":
            return orjson.loads(value)
        if name == "is_deleted":
            return bool(value)
        if name.endswith("_at"):
            if isinstance(value, str):
                value = datetime.fromisoformat(value).replace(tzinfo=UTC)
            return format_time(value)
        return value


_MATCH_EXISTING = text(
    "UPDATE import_batch SET existing_id = m.id FROM long_term_memory AS m "
    "WHERE m.user_id = import_batch.user_id AND m.namespace = import_batch.namespace "
    "AND m.key = import_batch.key"
)
_FETCH_EXISTING = text(
    "SELECT m.id, m.user_id, "
    + ", ".join(f"m.{name}" for name in _COMPARED)
    + ", "
    + ", ".join(f"b.{name}" for name in _COMPARED)
    + " FROM import_batch AS b JOIN long_term_memory AS m ON m.id = b.existing_id"
)
_SKIP_UNCHANGED = text("DELETE FROM import_batch WHERE existing_id IN :ids").bindparams(
    bindparam("ids", expanding=True)
)
_MERGE = text(
    f"INSERT INTO long_term_memory ({', '.join(_STAGED)}, version) "
    f"SELECT {', '.join(_STAGED)}, 1 FROM import_batch WHERE true "
    "ON CONFLICT (user_id, namespace, key) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in _COMPARED)
    + ", version = long_term_memory.version + 1"
)
_CREATE_EVENTS = text(
    "INSERT INTO memory_event "
    "(memory_id, user_id, actor, actor_user_id, action, changes, created_at) "
    "SELECT m.id, m.user_id, :actor, :actor_user_id, 'create', NULL, :now FROM import_batch AS b "
    "JOIN long_term_memory AS m ON m.user_id = b.user_id AND m.namespace = b.namespace "
    "AND m.key = b.key WHERE b.existing_id IS NULL"
).bindparams(bindparam("now", type_=UTCDateTime()))


async def import_jsonl(
    engine: AsyncEngine,
    *,
    source: IO[bytes],
    content_max_bytes: int,
    dry_run: bool = False,
    actor: str = IMPORT_ACTOR,
    actor_user_id: int | None = None,
    progress: ProgressCallback | None = None,
) -> ImportReport:
    """Import JSON Lines from source in one transaction; ImportFailed names a bad line."""
    report = ImportReport(dry_run=dry_run)
    now = utcnow()
    dialect = engine.dialect.name
    parser = _RecordParser(
        for_sqlite=dialect == "sqlite", content_max_bytes=content_max_bytes, now=now
    )
    async with engine.connect() as base_conn:
        conn = await base_conn.execution_options(memory_admin_write=True)
        raw = await conn.get_raw_connection()
        stager = _Stager(conn, raw.driver_connection, dialect)
        transaction = await conn.begin()
        try:
            await stager.create_staging()
            user_ids: dict[str, int] = {}
            for batch in _read_batches(source, parser, report, progress):
                rows = await _with_user_ids(conn, batch.rows, user_ids, report, now)
                await _merge_batch(stager, rows, report, actor, actor_user_id, now)
            await stager.drop_staging()
        except BaseException:
            await transaction.rollback()
            raise
        if dry_run:
            await transaction.rollback()
        else:
            await transaction.commit()
    return report


async def _with_user_ids(
    conn: AsyncConnection,
    rows: list[tuple[Any, ...]],
    user_ids: dict[str, int],
    report: ImportReport,
    now: datetime,
) -> list[tuple[Any, ...]]:
    """Rows with user ids in place of names; users not seen before are created."""
    users = User.__table__  # type: ignore[attr-defined]
    missing = {row[0] for row in rows} - user_ids.keys()
    if missing:
        found = await conn.execute(
            select(users.c.username, users.c.id).where(users.c.username.in_(missing))
        )
        user_ids.update((name, uid) for name, uid in found)
        new_names = sorted(missing - user_ids.keys())
        if new_names:
            await conn.execute(
                users.insert(),
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
            created = await conn.execute(
                select(users.c.username, users.c.id).where(users.c.username.in_(new_names))
            )
            user_ids.update((name, uid) for name, uid in created)
            report.users_created += len(new_names)
    return [(user_ids[row[0]], *row[1:]) for row in rows]


async def _merge_batch(
    stager: _Stager,
    rows: list[tuple[Any, ...]],
    report: ImportReport,
    actor: str,
    actor_user_id: int | None,
    now: datetime,
) -> None:
    """Load one batch into staging and merge it, with an event for every row it changes."""
    conn = stager.conn
    await stager.load(rows)
    matched = (await conn.execute(_MATCH_EXISTING)).rowcount
    if matched:
        unchanged_ids: list[int] = []
        events: list[tuple[Any, ...]] = []
        width = len(_COMPARED)
        event_time = stager.time_value(now)
        for record in (await conn.execute(_FETCH_EXISTING)).tuples():
            memory_id, user_id = record[0], record[1]
            old, new = record[2 : 2 + width], record[2 + width :]
            changes = {
                name: {
                    "old": stager.event_value(name, before),
                    "new": stager.event_value(name, after),
                }
                for name, before, after in zip(_COMPARED, old, new, strict=True)
                if before != after
            }
            if changes:
                events.append(
                    (
                        memory_id,
                        user_id,
                        actor,
                        actor_user_id,
                        "update",
                        dump_json(changes),
                        event_time,
                    )
                )
            else:
                unchanged_ids.append(memory_id)
        if unchanged_ids:
            await conn.execute(_SKIP_UNCHANGED, {"ids": unchanged_ids})
        report.unchanged += len(unchanged_ids)
        report.updated += len(events)
        if events:
            await stager.insert_update_events(events)
    await conn.execute(_MERGE)
    created = await conn.execute(
        _CREATE_EVENTS, {"actor": actor, "actor_user_id": actor_user_id, "now": now}
    )
    report.created += created.rowcount


# --- export ------------------------------------------------------------------------------


def format_time(value: datetime | None) -> str | None:
    """ISO-8601 in UTC with a trailing Z, as gen_memories.py writes it."""
    if value is None:
        return None
    value = value.astimezone(UTC)
    if value.microsecond:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


async def export_jsonl(
    engine: AsyncEngine,
    *,
    username: str | None = None,
    namespace: str | None = None,
    tags: Sequence[str] = (),
    state: str = "all",
) -> AsyncIterator[bytes]:
    """Yield the matching memories as JSON Lines, oldest id first, streamed from the database."""
    memories = LongTermMemory.__table__  # type: ignore[attr-defined]
    users = User.__table__  # type: ignore[attr-defined]
    dialect = engine.dialect.name
    query = (
        select(users.c.username, *(memories.c[name] for name in FIELDS[1:]))
        .select_from(memories.join(users, users.c.id == memories.c.user_id))
        .where(state_condition(state, now=utcnow()))
        .order_by(memories.c.id)
    )
    if username is not None:
        query = query.where(users.c.username == username)
    if namespace is not None:
        query = query.where(namespace_condition(namespace, dialect=dialect))
    if tags:
        query = query.where(tags_condition(tags, mode="all", dialect=dialect))
    async with engine.connect() as conn:
        result = await conn.stream(query.execution_options(yield_per=2000))
        async for partition in result.partitions():
            yield b"".join(_export_line(row) for row in partition)


def _export_line(row: Any) -> bytes:
    (
        user,
        namespace,
        key,
        content,
        tags,
        importance,
        access_count,
        last_accessed_at,
        expires_at,
        is_deleted,
        deleted_at,
        created_at,
        updated_at,
    ) = row
    return orjson.dumps(
        {
            "user": user,
            "namespace": namespace,
            "key": key,
            "content": content,
            "tags": tags,
            "importance": importance,
            "access_count": access_count,
            "last_accessed_at": format_time(last_accessed_at),
            "expires_at": format_time(expires_at),
            "is_deleted": is_deleted,
            "deleted_at": format_time(deleted_at),
            "created_at": format_time(created_at),
            "updated_at": format_time(updated_at),
        },
        option=orjson.OPT_APPEND_NEWLINE,
    )
