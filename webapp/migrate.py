"""Run and inspect Alembic migrations from code (the `migrate` command, serve, tests)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from webapp.models import metadata
from webapp.paths import resource_dir
from webapp.services import fulltext
from webapp.settings import SearchLanguage

IncludeObject = Callable[[Any, str | None, str, bool, Any], bool]


def alembic_config(database_url: str) -> Config:
    """An Alembic config for the shipped migrations/ folder and the given database."""
    config = Config()
    config.set_main_option("script_location", str(resource_dir("migrations")))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["configure_logging"] = False
    return config


def include_object_for(dialect_name: str) -> IncludeObject:
    """Alembic's include_object: skip model DDL meant only for the other dialect (ddl_if),
    and the search objects the models do not describe (services/fulltext.py owns them)."""
    unmodelled = {
        "table": fulltext.UNMODELLED_TABLES,
        "column": fulltext.UNMODELLED_COLUMNS,
        "index": fulltext.UNMODELLED_INDEXES,
    }

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        if reflected and name in unmodelled.get(type_, ()):
            return False
        ddl_if = getattr(obj, "_ddl_if", None)
        if ddl_if is not None and ddl_if.dialect is not None and not reflected:
            return bool(ddl_if.dialect == dialect_name)
        return True

    return include


SEARCH_LANGUAGE_ATTRIBUTE = "search_language"
"""Alembic config attribute: the SEARCH_LANGUAGE a migration builds the full-text index
for (without it, the environment's setting)."""


async def upgrade(
    engine: AsyncEngine, revision: str = "head", *, search_language: SearchLanguage | None = None
) -> None:
    """Upgrade the database behind engine to revision (head by default), building the
    full-text index for search_language (by default the environment's SEARCH_LANGUAGE)."""
    await _run(engine, command.upgrade, revision, search_language=search_language)


async def downgrade(engine: AsyncEngine, revision: str = "base") -> None:
    """Downgrade the database behind engine to revision (base by default)."""
    await _run(engine, command.downgrade, revision)


async def _run(
    engine: AsyncEngine,
    action: Callable[[Config, str], None],
    revision: str,
    *,
    search_language: SearchLanguage | None = None,
) -> None:
    """Run Alembic on a connection of ours (env.py uses it instead of opening another)."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    if search_language is not None:
        config.attributes[SEARCH_LANGUAGE_ATTRIBUTE] = search_language

    def run(sync_conn: Connection) -> None:
        config.attributes["sync_connection"] = sync_conn
        action(config, revision)

    async with engine.begin() as conn:
        await conn.run_sync(run)


async def schema_differences(engine: AsyncEngine) -> list[Any]:
    """What Alembic's autogenerate sees between the migrated database and the models."""

    def compare(sync_conn: Connection) -> list[Any]:
        context = MigrationContext.configure(
            sync_conn,
            opts={"compare_type": True, "include_object": include_object_for(engine.dialect.name)},
        )
        return list(compare_metadata(context, metadata))

    async with engine.connect() as conn:
        return await conn.run_sync(compare)


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at, or None when it has never been migrated."""

    def read(sync_conn: Connection) -> str | None:
        return MigrationContext.configure(sync_conn).get_current_revision()

    conn: AsyncConnection
    async with engine.connect() as conn:
        return await conn.run_sync(read)


def head_revision() -> str | None:
    """The newest revision shipped with this version of memory-admin."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
