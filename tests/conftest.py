"""Shared fixtures: every database test runs on SQLite and on the real PostgreSQL.

PostgreSQL comes from TEST_POSTGRES_URL (default: the local server's `test` database). A
fresh database is created per test module and dropped afterwards; tables are emptied after
each test. Without a server the PostgreSQL half is skipped, except under CI=true, where
it fails instead: CI must never pass by skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import delete
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from webapp import migrate
from webapp.db import create_engine, create_sessionmaker
from webapp.models import ApiToken, LongTermMemory, MemoryEvent, User
from webapp.settings import Settings

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
IN_CI = os.environ.get("CI", "").lower() == "true"
REPO_ROOT = Path(__file__).resolve().parent.parent
GEN_MEMORIES = REPO_ROOT.parent / "shared" / "tools" / "gen_memories.py"


def postgres_admin_url() -> str:
    """The server's maintenance database, from which test databases are created."""
    return os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def create_postgres_database() -> str:
    """Create an empty database on the test server; returns its SQLAlchemy URL."""
    admin_url = postgres_admin_url()
    name = f"ma_test_{uuid.uuid4().hex[:12]}"
    try:
        conn = await asyncpg.connect(_asyncpg_dsn(admin_url), timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        message = f"PostgreSQL not reachable at {admin_url}: {exc}"
        if IN_CI:
            pytest.fail(message + " (CI=true: PostgreSQL tests are required)")
        pytest.skip(message)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


async def drop_postgres_database(url: str) -> None:
    """Drop a database made by create_postgres_database."""
    name = make_url(url).database
    conn = await asyncpg.connect(_asyncpg_dsn(postgres_admin_url()), timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """A new database on the test server for the duration of the block."""
    url = await create_postgres_database()
    try:
        yield url
    finally:
        await drop_postgres_database(url)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """A fresh, empty database for this module, on each of the two backends."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / "test.db"
        yield f"sqlite+aiosqlite:///{path}"
        return
    async with postgres_database() as url:
        yield url


@pytest.fixture
async def fresh_database_url(database_url: str, tmp_path: Path) -> AsyncIterator[str]:
    """Another empty, never migrated database on the same backend as database_url."""
    if database_url.startswith("sqlite"):
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
        return
    async with postgres_database() as url:
        yield url


@pytest.fixture(scope="module")
def settings(database_url: str) -> Settings:
    """Settings for the module's database."""
    return Settings(database_url=database_url, secret_key="test-secret-key")


@pytest.fixture(scope="module")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """An engine on the module's database, migrated to head."""
    engine = create_engine(settings)
    await migrate.upgrade(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def db(engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """The migrated engine; every table is emptied after the test."""
    yield engine
    async with engine.begin() as conn:
        for model in (MemoryEvent, ApiToken, LongTermMemory, User):
            await conn.execute(delete(model))


@pytest.fixture
async def session(db: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A session on the test database (tables emptied afterwards)."""
    async with create_sessionmaker(db)() as session:
        yield session


@pytest.fixture(scope="session")
def gen_memories() -> Iterator[Path]:
    """Path of the shared dataset generator."""
    if not GEN_MEMORIES.exists():
        pytest.fail(f"dataset generator not found at {GEN_MEMORIES}")
    yield GEN_MEMORIES
