"""Health checks: can the database be reached, and is its schema current."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from webapp import migrate


async def database_status(engine: AsyncEngine) -> dict[str, str | None]:
    """The dialect and schema revisions; raises if the database cannot be reached."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    return {
        "database": engine.dialect.name,
        "revision": await migrate.current_revision(engine),
        "head": migrate.head_revision(),
    }
