"""What every command shares: its settings and an engine on a migrated database."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from webapp import migrate as migrations
from webapp.db import Database, create_engine
from webapp.errors import DatabaseUnavailable
from webapp.services.fulltext_language import check_index_language, reindex
from webapp.settings import ConfigError, Settings, get_settings

T = TypeVar("T")
PROG = "memory-admin"


def load_settings(make: Callable[[], Settings] = get_settings) -> Settings:
    """Settings from make (the environment's by default); a bad one is a one-line ConfigError."""
    try:
        return make()
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]).upper() if error["loc"] else "a setting"
        message = str(error["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{name}: {message}") from None


def run_with_engine(
    work: Callable[[AsyncEngine, Settings], Awaitable[T]], *, migrate: bool = True
) -> T:
    """Run work with an engine on a migrated database, then dispose of the engine."""
    settings = load_settings()

    async def main() -> T:
        engine = create_engine(settings)
        try:
            if migrate:
                await ensure_schema(engine, settings)
            return await work(engine, settings)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def run_with_db(work: Callable[[Database, Settings], Awaitable[T]]) -> T:
    """Run work with the Database of a migrated database (writes through Database.write,
    so SQLite's BEGIN IMMEDIATE applies), then close it."""

    async def with_db(engine: AsyncEngine, settings: Settings) -> T:
        return await work(Database(engine, search_language=settings.search_language), settings)

    return run_with_engine(with_db)


async def ensure_schema(engine: AsyncEngine, settings: Settings) -> None:
    """Migrate the default SQLite database; refuse any other database until `migrate` ran
    (a schema behind, or a full-text index built for another SEARCH_LANGUAGE)."""
    current = await migrations.current_revision(engine)
    head = migrations.head_revision()
    if current == head:
        if settings.uses_default_database:
            await reindex(engine, settings.search_language)
        await check_index_language(engine, settings.search_language)
        return
    if settings.uses_default_database:
        await migrations.upgrade(engine, search_language=settings.search_language)
        await reindex(engine, settings.search_language)
        return
    if current is None:
        raise DatabaseUnavailable(
            "the database has no memory-admin schema yet; run 'memory-admin migrate' first"
        )
    raise DatabaseUnavailable(
        f"the database schema is at revision {current} but this memory-admin needs {head}; "
        "run 'memory-admin migrate' first"
    )
