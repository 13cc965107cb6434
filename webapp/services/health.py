"""Health checks: can the database be reached, is its schema current, and for which
SEARCH_LANGUAGE was its full-text index built."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from webapp import migrate
from webapp.services.fulltext_language import index_language


async def database_status(engine: AsyncEngine) -> dict[str, str | None]:
    """The dialect, schema revisions and the index's search language; raises if the
    database cannot be reached."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
        language = await index_language(conn)
    return {
        "search_language": language,
        "database": engine.dialect.name,
        "revision": await migrate.current_revision(engine),
        "head": migrate.head_revision(),
    }
