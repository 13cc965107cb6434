"""Which language the full-text index reads words in: read back, checked, rebuilt.

The index is built for the SEARCH_LANGUAGE setting (services/fulltext.py says what each
language does), by the migration that made it or by `memory-admin migrate` since. Its
definition records the language (FTS5's tokenize option, the generated column's
expression), so it is read back from there rather than kept in a table of its own that
could disagree. Queries are written for the setting: a database whose index was built
for another language is refused at startup (check_index_language) until it is rebuilt.
"""

from __future__ import annotations

import re
from typing import get_args

from sqlalchemy import text as sql_text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from webapp.errors import DatabaseUnavailable
from webapp.services import fulltext
from webapp.settings import SearchLanguage

_FIRST_CONFIG = re.compile(r"to_tsvector\('(\w+)'::regconfig")


def rebuild_statements(dialect: str, language: SearchLanguage) -> list[str]:
    """Drop the text index and build it again for language from the rows there.

    SQLite: the FTS5 table and its triggers (the view and the tag table stay), filled
    at once with the bulk load's hash size (resume_after_bulk_load). PostgreSQL: the
    generated column is added again, which rewrites the table, and its GIN index is
    built once over the filled column.
    """
    if dialect == "postgresql":
        return [
            f"DROP INDEX IF EXISTS {fulltext.SEARCH_VECTOR_INDEX}",
            f"ALTER TABLE long_term_memory DROP COLUMN IF EXISTS {fulltext.SEARCH_VECTOR}",
            *fulltext.postgres_search_ddl(language),
        ]
    fts = fulltext.FTS_TABLE
    return [
        *(f"DROP TRIGGER IF EXISTS {name}" for name in fulltext.SQLITE_TRIGGERS),
        f"DROP TABLE IF EXISTS {fts}",
        fulltext.sqlite_fts_table(language),
        f"INSERT INTO {fts}({fts}, rank) VALUES ('hashsize', {fulltext.BULK_HASH_SIZE})",
        f"INSERT INTO {fts}({fts}) VALUES ('rebuild')",
        f"INSERT INTO {fts}({fts}, rank) VALUES ('hashsize', {fulltext.DEFAULT_HASH_SIZE})",
        *fulltext.SQLITE_TRIGGERS.values(),
    ]


async def index_language(conn: AsyncConnection) -> SearchLanguage | None:
    """The language the text index was built for, read back from its definition (None:
    there is no index yet)."""
    languages: tuple[SearchLanguage, ...] = get_args(SearchLanguage)
    if conn.dialect.name == "postgresql":
        definition = await conn.scalar(
            sql_text(
                "SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef AS d "
                "JOIN pg_attribute AS a ON a.attrelid = d.adrelid AND a.attnum = d.adnum "
                "WHERE d.adrelid = 'long_term_memory'::regclass AND a.attname = :column"
            ),
            {"column": fulltext.SEARCH_VECTOR},
        )
        if definition is None:
            return None
        # The first configuration is the key's (the owner word's is always simple).
        first = _FIRST_CONFIG.search(definition)
        for language in languages:
            if first is not None and first.group(1) == language:
                return language
    else:
        definition = await conn.scalar(
            sql_text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :name"),
            {"name": fulltext.FTS_TABLE},
        )
        if definition is None:
            return None
        for language in languages:
            if f"tokenize='{fulltext.TOKENIZERS[language]}'" in " ".join(definition.split()):
                return language
    flat = " ".join(str(definition).split())
    raise RuntimeError(f"the full-text index has a definition this version does not know: {flat}")


def mismatch_message(built: SearchLanguage, wanted: SearchLanguage) -> str:
    """What to tell the user when the index and the setting disagree."""
    return (
        f"the full-text index was built for SEARCH_LANGUAGE={built} but the setting is "
        f"{wanted}; run 'memory-admin migrate' to rebuild it (or set SEARCH_LANGUAGE={built})"
    )


async def check_index_language(engine: AsyncEngine, wanted: SearchLanguage) -> None:
    """Refuse a database whose index was built for another language than wanted."""
    async with engine.connect() as conn:
        built = await index_language(conn)
    if built is not None and built != wanted:
        raise DatabaseUnavailable(mismatch_message(built, wanted))


async def reindex(engine: AsyncEngine, language: SearchLanguage) -> bool:
    """Rebuild the index for language if it was built for another; True if it was."""
    async with engine.begin() as conn:
        built = await index_language(conn)
        if built is None or built == language:
            return False
        for statement in rebuild_statements(engine.dialect.name, language):
            await conn.exec_driver_sql(statement)
    return True
