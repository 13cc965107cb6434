"""Alembic environment: async engine, models' metadata, URL from Settings (or the config)."""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

import webapp.models  # noqa: F401  (registers every table on the metadata)
from webapp.db import create_engine
from webapp.migrate import include_object_for
from webapp.models import metadata
from webapp.settings import Settings, get_settings

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _settings() -> Settings:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return Settings(database_url=url)
    return get_settings()


def _configure(connection: Connection | None = None, **kwargs: object) -> None:
    dialect = connection.dialect.name if connection is not None else _settings().database_url
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,
        compare_type=True,
        include_object=include_object_for(dialect.split("+")[0]),
        **kwargs,  # type: ignore[arg-type]
    )


def run_migrations_offline() -> None:
    """Print the SQL instead of running it (`alembic upgrade head --sql`)."""
    _configure(url=_settings().database_url, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    """Run the migrations on a connection of the app's own engine (same pragmas)."""
    engine = create_engine(_settings())
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run_sync)
            await conn.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
elif (given := config.attributes.get("sync_connection")) is not None:
    _run_sync(given)  # webapp.migrate hands over a connection already in a transaction
else:
    asyncio.run(run_migrations_online())
