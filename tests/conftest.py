"""Shared fixtures: every database test runs on SQLite and on the real PostgreSQL.

PostgreSQL comes from TEST_POSTGRES_URL (default: the local server's `test` database). A
fresh database is created per test module and dropped afterwards; tables are emptied after
each test. Without a server the PostgreSQL half is skipped, except under CI=true, where
it fails instead: CI must never pass by skipping.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Generator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy import delete
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.browser_support import AppData, Browsing, LiveServer, chromium, fetch_htmx
from webapp import migrate
from webapp.db import Database, create_engine, create_sessionmaker
from webapp.models import ApiToken, LoginThrottle, LongTermMemory, MemoryEvent, User, WebSession
from webapp.models_admin import AdminEvent
from webapp.models_embedding import EmbeddingQueue, MemoryEmbedding
from webapp.services.vector_index import get_index
from webapp.settings import Settings

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page

pytest_plugins = ["tests.web_support", "tests.api_support", "tests.mcp_support"]

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
        for model in (
            AdminEvent,
            MemoryEvent,
            ApiToken,
            WebSession,
            LoginThrottle,
            EmbeddingQueue,
            MemoryEmbedding,
            LongTermMemory,
            User,
        ):
            await conn.execute(delete(model))
    # Search keeps each user's vectors in memory; the next test's user 1 is someone else.
    get_index().forget()


@pytest.fixture
async def database(db: AsyncEngine) -> Database:
    """The service layer's Database on the test's engine."""
    return Database(db)


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


def generate(generator: Path, into: Path, *options: str) -> Path:
    """Run the dataset generator (the gen_memories fixture) with options into a file."""
    with into.open("wb") as out:
        subprocess.run(
            [sys.executable, str(generator), *options], stdout=out, check=True, timeout=300
        )
    return into


# --- browser tests: the live server, Debian's Chromium, htmx served offline ---------------
#
# Browser tests are async tests that use `web`, `page`, `context`, `browser` or `app_data`;
# they run on the session's event loop, where the one Chromium lives (marked at collection
# below). Each runs once per backend (`database_url`'s params) against a live server per
# module; give them data with `app_data`, not with the `engine`, `db` or `session` fixtures
# (those live on the module's loop). Helpers: tests/browser_support.py.

BROWSER_FIXTURES = frozenset({"browser", "web", "context", "page", "app_data"})
PHASE_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()
BROWSER_ARTIFACTS = pytest.StashKey[list[Path]]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run every async browser test on the session's loop, where the browser lives."""
    session_loop = pytest.mark.asyncio(loop_scope="session")
    for item in items:
        if BROWSER_FIXTURES & set(getattr(item, "fixturenames", ())) and (
            pytest_asyncio.is_async_test(item)
        ):
            item.add_marker(session_loop, append=False)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item, so fixtures can tell whether the test failed."""
    report = yield
    item.stash.setdefault(PHASE_REPORTS, {})[report.when] = report
    return report


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """List the screenshots and HTML saved for failed browser tests."""
    paths = config.stash.get(BROWSER_ARTIFACTS, [])
    if paths:
        terminalreporter.section("browser failure artifacts")
        for path in paths:
            terminalreporter.line(str(path))


@pytest.fixture(scope="session")
def htmx_js(request: pytest.FixtureRequest) -> bytes:
    """The htmx file behind settings.HTMX_URL, from `npm pack` (cached between runs)."""
    cache = getattr(request.config, "cache", None)
    cache_dir = cache.mkdir("htmx") if cache else REPO_ROOT / "test-artifacts" / "cache"
    return fetch_htmx(Path(cache_dir))


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, one for the whole run (skipped without it, failed under CI=true)."""
    async with chromium() as browser:
        yield browser


@pytest.fixture(scope="module")
def live_server(settings: Settings) -> Iterator[LiveServer]:
    """The app under uvicorn on a free port, on the module's migrated database (per backend)."""
    backend = "sqlite" if settings.is_sqlite else "postgresql"
    # No background embedder: the pages under test do not need vectors, and the model
    # would take the browser's CPU; tests that do need them drain the queue themselves.
    quiet = settings.model_copy(update={"background_embedding": False})
    with LiveServer(quiet, backend=backend) as server:
        yield server


@pytest_asyncio.fixture(loop_scope="session")
async def web(
    request: pytest.FixtureRequest, browser: Browser, live_server: LiveServer, htmx_js: bytes
) -> AsyncIterator[Browsing]:
    """This test's browser contexts; on failure, saves screenshots and HTML of their pages."""
    browsing = Browsing(browser, live_server, htmx_js)
    try:
        yield browsing
    finally:
        report = request.node.stash.get(PHASE_REPORTS, {}).get("call")
        if report is not None and report.failed:
            saved = await browsing.save_failure_artifacts(request.node.nodeid)
            request.config.stash.setdefault(BROWSER_ARTIFACTS, []).extend(saved)
        await browsing.close()


@pytest_asyncio.fixture(loop_scope="session")
async def context(web: Browsing) -> BrowserContext:
    """A fresh browser context (desktop, light, JavaScript on) on the live server."""
    return await web.new_context()


@pytest_asyncio.fixture(loop_scope="session")
async def page(context: BrowserContext) -> Page:
    """A page in `context`; page.goto takes paths of the live server."""
    return await context.new_page()


@pytest_asyncio.fixture(loop_scope="session")
async def app_data(live_server: LiveServer) -> AsyncIterator[AppData]:
    """Empties the live server's database, then lets the test add users and memories."""
    data = AppData(live_server.settings)
    await data.reset()
    try:
        yield data
    finally:
        await data.close()
