"""Value encodings shared by the database layer and the import worker (standard library + orjson).

Kept free of SQLAlchemy and FastAPI so that the import's parse worker starts small.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson


def dump_json(value: Any) -> str:
    """The one JSON encoding used for JSON columns (compact, UTF-8 kept as is)."""
    return orjson.dumps(value).decode()


def sqlite_datetime_text(value: datetime) -> str:
    """The text SQLAlchemy's SQLite DATETIME stores for a UTC datetime (sorts chronologically)."""
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d} "
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}"
    )


def format_time(value: datetime | None) -> str | None:
    """ISO-8601 in UTC with a trailing Z, as gen_memories.py writes it."""
    if value is None:
        return None
    value = value.astimezone(UTC)
    if value.microsecond:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")
