"""Looking for a string anywhere in a test database: every table, every column, the SQLite
full-text index's own shadow tables and PostgreSQL's search vectors included."""

from __future__ import annotations

import sqlite3
from contextlib import closing

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from webapp.db import Database
from webapp.models import MemoryCreate, MemoryUpdate, User
from webapp.services.memories import remember, update_memory
from webapp.services.principal import Principal


async def places_holding(engine: AsyncEngine, needle: str) -> list[str]:
    """`table` names (one per row) whose row holds needle, case-insensitively, anywhere.

    SQLite: every table in sqlite_master (FTS5's shadow tables too), text values and
    blobs alike (the full-text index keeps its terms lowercased in blobs; a term may
    be stored after the prefix it shares with the term before it, so blobs are searched
    for needle without its first two characters). PostgreSQL: every table of the
    public schema, each row cast to text (generated tsvectors included).
    """
    if engine.dialect.name == "sqlite":
        path = make_url(str(engine.url)).database
        assert path is not None
        return _sqlite_places(path, needle.lower())
    found: list[str] = []
    async with engine.connect() as conn:
        tables = await conn.execute(
            text(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
            )
        )
        for (table,) in tables.all():
            rows = await conn.execute(
                text(f'SELECT count(*) FROM "{table}" AS t WHERE strpos(lower(t::text), :n) > 0'),
                {"n": needle.lower()},
            )
            found += [table] * int(rows.scalar_one())
    return found


def _sqlite_places(path: str, needle: str) -> list[str]:
    in_blobs = needle[2:].encode()
    found: list[str] = []
    with closing(sqlite3.connect(path)) as conn:
        tables = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND sql NOT LIKE 'CREATE VIRTUAL%'"
        ).fetchall()
        for (table,) in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                if any(_holds(value, needle, in_blobs) for value in row):
                    found.append(table)
    return found


def _holds(value: object, needle: str, in_blobs: bytes) -> bool:
    if isinstance(value, str):
        return needle in value.lower()
    if isinstance(value, bytes):
        return in_blobs in value.lower()
    return False


async def plant(engine: AsyncEngine, *, session_user: User, word: str) -> int:
    """A memory of session_user's with word in its namespace, key, content and tags,
    edited twice (its events hold word too); returns its id."""
    db = Database(engine)
    owner = Principal.of_user(session_user)
    created = await remember(
        db,
        principal=owner,
        data=MemoryCreate(
            namespace=f"private/{word}",
            key=f"note-{word}",
            content=f"my secret is {word} and more",
            tags=[word, "plain"],
        ),
    )
    memory_id = created.memory.id
    assert memory_id is not None
    await update_memory(
        db,
        principal=owner,
        memory_id=memory_id,
        changes=MemoryUpdate(content=f"now {word} twice {word}"),
    )
    return memory_id
