"""Alembic migrations on both databases: up, down, up again, and the schema equals the models."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from webapp import migrate
from webapp.db import Database, create_engine
from webapp.models import BrowseQuery, LongTermMemory, SearchRequest, User, metadata
from webapp.services import search, vectors
from webapp.services.browse import browse
from webapp.services.cursors import CursorSigner
from webapp.services.principal import Principal
from webapp.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
APP_TABLES = {
    "users",
    "long_term_memory",
    "memory_event",
    "api_token",
    "web_session",
    "login_throttle",
    "admin_event",
    "namespace_summary",
    "memory_embedding",
    "embedding_queue",
    "duplicate_pair",
    "duplicate_watermark",
    "duplicate_dismissal",
    "vector_count",
}
GIN_INDEX = "ix_long_term_memory_tags_gin"


@pytest.fixture
async def fresh_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine of our own on the module's database, downgraded to base after each test."""
    engine = create_engine(Settings(database_url=database_url, secret_key="test"))
    try:
        yield engine
    finally:
        await migrate.downgrade(engine)
        await engine.dispose()


async def table_names(engine: AsyncEngine) -> set[str]:
    """The tables that exist in the database."""

    def read(sync_conn: Connection) -> set[str]:
        return set(inspect(sync_conn).get_table_names())

    async with engine.connect() as conn:
        return await conn.run_sync(read)


async def index_names(engine: AsyncEngine, table: str) -> set[str]:
    """The names of the indexes on table, as the database reports them."""

    def read(sync_conn: Connection) -> set[str]:
        return {index["name"] for index in inspect(sync_conn).get_indexes(table)}

    async with engine.connect() as conn:
        return await conn.run_sync(read)


def test_models_define_the_app_tables() -> None:
    """The metadata the migrations are compared with holds exactly the app's tables."""
    assert set(metadata.tables) == APP_TABLES


async def test_fresh_database_is_at_no_revision(fresh_engine: AsyncEngine) -> None:
    """Before any migration there is no revision and no app table."""
    assert await migrate.current_revision(fresh_engine) is None
    assert not (await table_names(fresh_engine)) & APP_TABLES


async def test_upgrade_to_head_matches_models(fresh_engine: AsyncEngine) -> None:
    """Upgrading gives the head revision and a schema autogenerate finds nothing to change in."""
    head = migrate.head_revision()
    assert head is not None

    await migrate.upgrade(fresh_engine)

    assert await migrate.current_revision(fresh_engine) == head
    assert APP_TABLES <= await table_names(fresh_engine)
    assert await migrate.schema_differences(fresh_engine) == []


async def test_upgrade_twice_is_a_no_op(fresh_engine: AsyncEngine) -> None:
    """Running migrate on an up-to-date database changes nothing and does not fail."""
    await migrate.upgrade(fresh_engine)
    await migrate.upgrade(fresh_engine)
    assert await migrate.current_revision(fresh_engine) == migrate.head_revision()
    assert await migrate.schema_differences(fresh_engine) == []


async def test_schema_differences_notice_drift(fresh_engine: AsyncEngine) -> None:
    """The comparison is real: an index missing from the database is reported."""
    await migrate.upgrade(fresh_engine)
    async with fresh_engine.begin() as conn:
        await conn.execute(text("DROP INDEX ix_long_term_memory_importance"))

    differences = await migrate.schema_differences(fresh_engine)
    assert [(diff[0], diff[1].name) for diff in differences] == [
        ("add_index", "ix_long_term_memory_importance")
    ]


async def test_tags_column_per_dialect(fresh_engine: AsyncEngine) -> None:
    """PostgreSQL: tags is jsonb with a GIN index. SQLite: no such index."""
    await migrate.upgrade(fresh_engine)
    indexes = await index_names(fresh_engine, "long_term_memory")
    assert {
        "ix_long_term_memory_user_id_namespace",
        "ix_long_term_memory_importance",
        "ix_long_term_memory_namespace",
        "ix_long_term_memory_user_id",
    } <= indexes

    if fresh_engine.dialect.name == "sqlite":
        assert GIN_INDEX not in indexes
        return
    assert GIN_INDEX in indexes
    async with fresh_engine.connect() as conn:
        data_type = await conn.scalar(
            text(
                "SELECT data_type FROM information_schema.columns"
                " WHERE table_name = 'long_term_memory' AND column_name = 'tags'"
            )
        )
        method = await conn.scalar(
            text(
                "SELECT am.amname FROM pg_class c JOIN pg_am am ON am.oid = c.relam"
                " WHERE c.relname = :name"
            ),
            {"name": GIN_INDEX},
        )
    assert data_type == "jsonb"
    assert method == "gin"


async def test_unique_constraint_is_migrated(fresh_engine: AsyncEngine) -> None:
    """The unique (user_id, namespace, key) constraint exists under its conventional name."""
    await migrate.upgrade(fresh_engine)

    def read(sync_conn: Connection) -> list[tuple[str | None, list[str]]]:
        constraints = inspect(sync_conn).get_unique_constraints("long_term_memory")
        return [(c["name"], c["column_names"]) for c in constraints]

    async with fresh_engine.connect() as conn:
        constraints = await conn.run_sync(read)
    assert ("uq_long_term_memory_user_id_namespace_key", ["user_id", "namespace", "key"]) in (
        constraints
    )


async def test_downgrade_then_upgrade_again(fresh_engine: AsyncEngine) -> None:
    """Down to base drops every app table; up again restores an identical schema."""
    await migrate.upgrade(fresh_engine)
    await migrate.downgrade(fresh_engine)

    assert not (await table_names(fresh_engine)) & APP_TABLES
    assert await migrate.current_revision(fresh_engine) is None

    await migrate.upgrade(fresh_engine)
    assert await migrate.current_revision(fresh_engine) == migrate.head_revision()
    assert APP_TABLES <= await table_names(fresh_engine)
    assert await migrate.schema_differences(fresh_engine) == []


@pytest.mark.slow
def test_offline_sql_for_postgresql() -> None:
    """`alembic upgrade head --sql` prints PostgreSQL DDL without connecting anywhere."""
    env = {
        **os.environ,
        # Port 1 on a reserved address: the run must not try to connect.
        "DATABASE_URL": "postgresql+asyncpg://nobody@192.0.2.1:1/offline",
    }
    env.pop("SECRET_KEY", None)
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head", "--sql"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    sql = result.stdout
    assert "CREATE TABLE long_term_memory" in sql
    assert "CREATE TABLE users" in sql
    assert "JSONB" in sql
    assert f"CREATE INDEX {GIN_INDEX} ON long_term_memory USING gin (tags)" in sql
    assert "UPDATE alembic_version" in sql or "INSERT INTO alembic_version" in sql


async def test_upgrade_indexes_the_rows_already_there(fresh_engine: AsyncEngine) -> None:
    """A database filled before the search indexes existed finds its old rows after 0002."""
    await migrate.upgrade(fresh_engine, "0001")
    now = datetime.now(UTC)
    async with fresh_engine.begin() as conn:
        user_id = (
            await conn.execute(
                insert(User).values(
                    username="old",
                    password_hash="!",
                    is_admin=False,
                    is_active=True,
                    created_at=now,
                )
            )
        ).inserted_primary_key[0]
        await conn.execute(
            insert(LongTermMemory).values(
                user_id=user_id, namespace="n", key="legacy-key", content="written long ago",
                tags=["vintage"], importance=0.5, access_count=0, is_deleted=False, version=1,
                created_at=now, updated_at=now,
            )
        )  # fmt: skip
    await migrate.upgrade(fresh_engine)

    database = Database(fresh_engine)
    signer = CursorSigner("test")
    for query in (BrowseQuery(q="long ago"), BrowseQuery(q="legacy"), BrowseQuery(tag=["vintage"])):
        page = await browse(database, principal=Principal.operator(), query=query, signer=signer)
        assert [memory.key for memory in page.items] == ["legacy-key"], query
    found = await search.search(
        database,
        principal=Principal(user_id=user_id, username="old"),
        request=SearchRequest(query="ago"),
    )
    assert [scored.memory.key for scored in found] == ["legacy-key"]  # the owner word (0005)


async def test_0010_stems_the_rows_already_there_and_goes_back(
    fresh_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """0010 rebuilds the text index of a filled database for SEARCH_LANGUAGE=english: the
    old rows are then found by word form; downgrade goes back to words as written."""
    await migrate.upgrade(fresh_engine, "0009")
    now = datetime.now(UTC)
    async with fresh_engine.begin() as conn:
        user_id = (
            await conn.execute(
                insert(User).values(
                    username="old",
                    password_hash="!",
                    is_admin=False,
                    is_active=True,
                    created_at=now,
                )
            )
        ).inserted_primary_key[0]
        await conn.execute(
            insert(LongTermMemory).values(
                user_id=user_id, namespace="n", key="coffee", content="Drinks coffee black",
                tags=[], importance=0.5, access_count=0, is_deleted=False, version=1,
                created_at=now, updated_at=now,
            )
        )  # fmt: skip
    owner = Principal(user_id=user_id, username="old")
    signer = CursorSigner("test")

    async def keys(database: Database, q: str) -> tuple[list[str], list[str]]:
        page = await browse(
            database, principal=Principal.operator(), query=BrowseQuery(q=q), signer=signer
        )
        found = await search.search(database, principal=owner, request=SearchRequest(query=q))
        return [memory.key for memory in page.items], [scored.memory.key for scored in found]

    await migrate.upgrade(fresh_engine, search_language="english")
    stemmed = Database(fresh_engine, search_language="english")
    assert await keys(stemmed, "drinking") == (["coffee"], ["coffee"])
    assert await migrate.schema_differences(fresh_engine) == []

    await migrate.downgrade(fresh_engine, "0009")
    # Words only: the vector counts this search's semantic part reads came with 0012.
    monkeypatch.setattr(vectors, "enabled", lambda: False)
    as_written = Database(fresh_engine, search_language="simple")
    assert await keys(as_written, "drinking") == ([], [])
    assert await keys(as_written, "drinks") == (["coffee"], ["coffee"])
