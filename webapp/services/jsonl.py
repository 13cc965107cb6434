"""The JSON Lines format of gen_memories.py: parsing and validating lines, writing them.

Parsing is pure (no database), so an import can run it in a worker process while the
main process writes the previous batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from webapp.formats import dump_json, format_time, sqlite_datetime_text
from webapp.ids import INT4_MAX
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

ROW_COLUMNS = ("user_id", *FIELDS[1:])
"""Columns of a parsed row, in order; the first holds the username until it is resolved."""

UPDATABLE_COLUMNS = ROW_COLUMNS[3:]
"""What an import may change on an existing row; compared to tell updated from unchanged."""


@dataclass(frozen=True)
class ParseOptions:
    """What parsing needs to know: the target dialect's value forms and the content limit."""

    for_sqlite: bool
    content_max_bytes: int
    now: datetime


@dataclass
class ParsedChunk:
    """The rows of a chunk of lines, in file order, up to the first bad line."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    error_line: int | None = None
    error: str | None = None


def _time(value: datetime | None, for_sqlite: bool) -> Any:
    if value is None or not for_sqlite:
        return value
    return sqlite_datetime_text(value)


class RecordParser:
    """Validates JSON lines with the field rules of validation.py; returns rows to write."""

    def __init__(self, options: ParseOptions) -> None:
        self.options = options
        self._usernames: set[str] = set()
        self._namespaces: set[str] = set()

    def parse(self, line: bytes) -> tuple[Any, ...]:
        """The row for one line, with the username in place of user_id; ValueError if bad."""
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
        content = validate_content(record["content"], self.options.content_max_bytes)
        tags = validate_tags(record.get("tags"))
        importance = validate_importance(record.get("importance", 0.5))
        access_count = record.get("access_count", 0)
        # A 32-bit column on PostgreSQL, and the same rule on SQLite: a larger count was
        # the database driver's OverflowError, without the line's number.
        if type(access_count) is not int or not 0 <= access_count <= INT4_MAX:
            raise ValueError(f"access_count must be a whole number from 0 to {INT4_MAX:,}")
        is_deleted = record.get("is_deleted", False)
        if type(is_deleted) is not bool:
            raise ValueError("is_deleted must be true or false")

        now = self.options.now
        last_accessed_at = parse_utc(record.get("last_accessed_at"), "last_accessed_at")
        expires_at = parse_utc(record.get("expires_at"), "expires_at")
        deleted_at = parse_utc(record.get("deleted_at"), "deleted_at")
        created_at = parse_utc(record.get("created_at"), "created_at") or now
        updated_at = parse_utc(record.get("updated_at"), "updated_at") or created_at
        if updated_at < created_at:
            raise ValueError("updated_at is earlier than created_at")
        if deleted_at is not None and not is_deleted:
            raise ValueError("deleted_at is set but is_deleted is false")
        if is_deleted and deleted_at is None:
            deleted_at = now  # the retention period starts now, never in the past

        sqlite = self.options.for_sqlite
        return (
            username,
            namespace,
            key,
            content,
            dump_json(tags),
            importance,
            access_count,
            _time(last_accessed_at, sqlite),
            _time(expires_at, sqlite),
            int(is_deleted) if sqlite else is_deleted,
            _time(deleted_at, sqlite),
            _time(created_at, sqlite),
            _time(updated_at, sqlite),
        )


_parsers: dict[ParseOptions, RecordParser] = {}


def parse_chunk(data: bytes, first_line: int, options: ParseOptions) -> ParsedChunk:
    """Parse whole lines; stops at the first bad one, recording its number and the reason.

    Runs in a worker process for large imports, so it returns errors instead of raising.
    """
    parser = _parsers.get(options)
    if parser is None:
        parser = _parsers[options] = RecordParser(options)
    chunk = ParsedChunk()
    line_no = first_line - 1
    for line in data.splitlines():
        line_no += 1
        if not line.strip():
            continue
        try:
            chunk.rows.append(parser.parse(line))
        except ValueError as exc:
            chunk.error_line, chunk.error = line_no, str(exc)
            break
    return chunk


def canonical(name: str, value: Any) -> Any:
    """A column value in one form whatever its source (staged row or ORM read)."""
    if value is None:
        return None
    if name == "tags":
        return orjson.loads(value) if isinstance(value, str | bytes) else list(value)
    if name == "is_deleted":
        return bool(value)
    if name.endswith("_at"):
        if isinstance(value, str):
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        return value.astimezone(UTC)
    return value


def json_value(value: Any) -> Any:
    """A canonical value as it appears in JSON (events, exports)."""
    return format_time(value) if isinstance(value, datetime) else value


def export_line(row: Any) -> bytes:
    """One memory as a JSON line; row holds the FIELDS in order, as the ORM reads them."""
    record = dict(zip(FIELDS, row, strict=True))
    for name in ("last_accessed_at", "expires_at", "deleted_at", "created_at", "updated_at"):
        record[name] = format_time(record[name])
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
