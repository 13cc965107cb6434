"""The database layer: engine settings per dialect, sessions, write transactions."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import event, inspect, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from webapp.db import (
    Database,
    create_engine,
    create_sessionmaker,
    write_connection,
    write_session,
)
from webapp.models import User
from webapp.settings import DEFAULT_DATABASE_URL, ConfigError, Settings

WRITERS = 8


def require(settings: Settings, dialect: str) -> None:
    """Skip the test unless the module's database is of the given dialect."""
    if (dialect == "sqlite") != settings.is_sqlite:
        pytest.skip(f"{dialect} only")


async def scalar(conn: AsyncConnection, sql: str) -> Any:
    """The single value of one SQL statement."""
    return (await conn.execute(text(sql))).scalar_one()


async def scalar_in(session: AsyncSession, sql: str) -> Any:
    """The single value of one SQL statement, in a session."""
    return (await session.execute(text(sql))).scalar_one()


@pytest.fixture
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """An engine on a fresh SQLite file, with a one-row counter table."""
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    engine = create_engine(settings)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER)"))
        await conn.execute(text("INSERT INTO counter (id, n) VALUES (1, 0)"))
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def statements(sqlite_engine: AsyncEngine) -> Iterator[list[str]]:
    """Every SQL statement the sqlite_engine sends, in order."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    event.listen(sqlite_engine.sync_engine, "before_cursor_execute", record)
    yield sent
    event.remove(sqlite_engine.sync_engine, "before_cursor_execute", record)


# --- SQLite connections --------------------------------------------------------------------


async def test_sqlite_pragmas(settings: Settings, engine: AsyncEngine) -> None:
    """Every pooled SQLite connection runs in WAL with foreign keys and the busy timeout."""
    require(settings, "sqlite")
    async with engine.connect() as first, engine.connect() as second:
        for conn in (first, second):
            assert (await scalar(conn, "PRAGMA journal_mode")).lower() == "wal"
            assert await scalar(conn, "PRAGMA foreign_keys") == 1
            assert await scalar(conn, "PRAGMA busy_timeout") == settings.sqlite_busy_timeout_ms
            assert await scalar(conn, "PRAGMA synchronous") == 1  # NORMAL


async def test_sqlite_busy_timeout_follows_settings(tmp_path: Path) -> None:
    """SQLITE_BUSY_TIMEOUT_MS is what the connections get."""
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", sqlite_busy_timeout_ms=1234
    )
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            assert await scalar(conn, "PRAGMA busy_timeout") == 1234
    finally:
        await engine.dispose()


async def test_sqlite_parent_folder_is_created(tmp_path: Path) -> None:
    """A database file in a folder that does not exist yet still opens."""
    path = tmp_path / "new" / "folder" / "db.sqlite"
    engine = create_engine(Settings(database_url=f"sqlite+aiosqlite:///{path}"))
    try:
        async with engine.connect() as conn:
            assert await scalar(conn, "SELECT 1") == 1
    finally:
        await engine.dispose()
    assert path.exists()


async def test_write_connection_begins_immediate(
    sqlite_engine: AsyncEngine, statements: list[str]
) -> None:
    """Write transactions open with BEGIN IMMEDIATE; ordinary ones with a plain BEGIN."""
    async with write_connection(sqlite_engine) as conn:
        await conn.execute(text("UPDATE counter SET n = n + 1"))
    assert [s for s in statements if s.startswith("BEGIN")] == ["BEGIN IMMEDIATE"]

    statements.clear()
    async with sqlite_engine.begin() as conn:
        await conn.execute(text("SELECT n FROM counter"))
    assert [s for s in statements if s.startswith("BEGIN")] == ["BEGIN"]

    statements.clear()
    async with write_session(create_sessionmaker(sqlite_engine)) as session:
        await session.execute(text("UPDATE counter SET n = n + 1"))
    assert [s for s in statements if s.startswith("BEGIN")] == ["BEGIN IMMEDIATE"]

    async with sqlite_engine.connect() as conn:
        assert await scalar(conn, "SELECT n FROM counter") == 2


async def test_read_sessions_issue_no_begin_on_sqlite(
    sqlite_engine: AsyncEngine, statements: list[str]
) -> None:
    """Database.read() sends no BEGIN (each statement its own snapshot); writes still do."""
    database = Database(sqlite_engine)
    async with database.read() as session:
        assert (await session.execute(text("SELECT n FROM counter"))).scalar_one() == 0
        await session.execute(text("SELECT n FROM counter"))
    assert [s for s in statements if s.startswith("BEGIN")] == []
    async with database.write() as session:
        await session.execute(text("UPDATE counter SET n = n + 1"))
    assert [s for s in statements if s.startswith("BEGIN")] == ["BEGIN IMMEDIATE"]
    async with database.read() as session:
        assert (await session.execute(text("SELECT n FROM counter"))).scalar_one() == 1


async def test_pinned_reads_share_one_connection_per_task(db: AsyncEngine) -> None:
    """Inside pinned_reads() a task's read sessions share one pooled connection, taken at
    the first read; another task's get their own (never one connection at once); the
    connection goes back to the pool when the block ends."""
    database = Database(db)
    pool: Any = db.pool
    checkouts: list[object] = []

    def on_checkout(dbapi_connection: object, *_args: Any) -> None:
        checkouts.append(dbapi_connection)

    event.listen(db.sync_engine, "checkout", on_checkout)
    try:
        before = pool.checkedout()
        async with database.pinned_reads():
            assert checkouts == []  # nothing read yet, nothing taken
            for _ in range(3):
                async with database.read() as session:
                    assert (await session.execute(select(User))).first() is None
            assert len(checkouts) == 1 and pool.checkedout() == before + 1

            async def elsewhere() -> None:
                async with database.read() as session:
                    await session.execute(text("SELECT 1"))

            await asyncio.gather(elsewhere(), elsewhere())
            assert len(checkouts) == 3 and checkouts[0] not in checkouts[1:]
        assert pool.checkedout() == before
    finally:
        event.remove(db.sync_engine, "checkout", on_checkout)


async def test_pinned_reads_see_writes_made_meanwhile(db: AsyncEngine) -> None:
    """Reads hold no snapshot: a read after a write in the same request sees it."""
    database = Database(db)
    async with database.pinned_reads():
        async with database.read() as session:
            assert (await session.execute(select(User))).first() is None
        async with database.write() as session:
            session.add(User(username="later", password_hash="!"))
        async with database.read() as session:
            names = (await session.execute(select(User.username))).scalars().all()
    assert names == ["later"]


async def test_sqlite_writes_inside_pinned_reads_use_the_pinned_connection(
    sqlite_engine: AsyncEngine, tmp_path: Path
) -> None:
    """On SQLite a request's write runs on the connection its reads are pinned to (a
    write on another connection would empty that one's page cache): one connection in
    all, holding the write lock from its first statement to its commit, and later reads
    see the write."""
    database = Database(sqlite_engine)
    other = create_engine(
        Settings(
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", sqlite_busy_timeout_ms=0
        )
    )
    checkouts: list[object] = []

    def on_checkout(dbapi_connection: object, *_args: Any) -> None:
        checkouts.append(dbapi_connection)

    event.listen(sqlite_engine.sync_engine, "checkout", on_checkout)
    try:
        async with database.pinned_reads():
            async with database.read() as session:
                assert await scalar_in(session, "SELECT n FROM counter") == 0
            async with database.write() as session:
                await session.execute(text("SELECT n FROM counter"))
                with pytest.raises(OperationalError, match="locked"):
                    async with write_connection(other) as blocked:
                        await blocked.execute(text("UPDATE counter SET n = 100"))
                await session.execute(text("UPDATE counter SET n = n + 1"))
            async with database.read() as session:
                assert await scalar_in(session, "SELECT n FROM counter") == 1
    finally:
        event.remove(sqlite_engine.sync_engine, "checkout", on_checkout)
        await other.dispose()
    assert len(checkouts) == 1
    async with sqlite_engine.connect() as conn:
        assert await scalar(conn, "SELECT n FROM counter") == 1


async def test_a_failed_write_inside_pinned_reads_leaves_nothing_and_reads_go_on(
    db: AsyncEngine,
) -> None:
    """An exception in a request's write rolls it back, on either database, and the
    request can still read (and write) afterwards."""
    database = Database(db)
    async with database.pinned_reads():
        with pytest.raises(RuntimeError, match="boom"):
            async with database.write() as session:
                session.add(User(username="never", password_hash="!"))
                await session.flush()
                raise RuntimeError("boom")
        with pytest.raises(IntegrityError):
            async with database.write() as session:
                session.add(User(username="twice", password_hash="!"))
                session.add(User(username="twice", password_hash="!"))
        async with database.read() as session:
            assert (await session.execute(select(User))).first() is None
        async with database.write() as session:
            session.add(User(username="kept", password_hash="!"))
        async with database.read() as session:
            names = (await session.execute(select(User.username))).scalars().all()
    assert names == ["kept"]
    async with database.read() as session:
        names = (await session.execute(select(User.username))).scalars().all()
    assert names == ["kept"]


async def test_postgres_reads_run_outside_a_transaction(
    settings: Settings, db: AsyncEngine
) -> None:
    """PostgreSQL read sessions are AUTOCOMMIT: no BEGIN/ROLLBACK round trips."""
    require(settings, "postgresql")
    database = Database(db)
    async with database.read() as session:
        first = await scalar_in(session, "SELECT now()")
        await session.execute(text("SELECT pg_sleep(0.01)"))
        second = await scalar_in(session, "SELECT now()")
    # now() is the start of the transaction: it moves only if each statement is its own.
    assert second > first


def test_sqlite_pool_follows_settings(tmp_path: Path) -> None:
    """DB_POOL_SIZE and DB_MAX_OVERFLOW size the SQLite pool too (a page reads on two
    connections at once, so a small pool would keep opening and closing connections)."""
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'pool.db'}",
        db_pool_size=7,
        db_max_overflow=3,
    )
    pool: Any = create_engine(settings).pool
    assert (pool.size(), pool._max_overflow) == (7, 3)


async def test_deferred_read_then_write_can_fail(sqlite_engine: AsyncEngine) -> None:
    """Why BEGIN IMMEDIATE: a deferred reader that writes after another commit gets 'locked'."""
    async with sqlite_engine.connect() as reader:
        await reader.begin()
        seen = await scalar(reader, "SELECT n FROM counter")
        async with write_connection(sqlite_engine) as writer:
            await writer.execute(text("UPDATE counter SET n = n + 1"))
        with pytest.raises(OperationalError, match="database is locked"):
            await reader.execute(text("UPDATE counter SET n = :n"), {"n": seen + 1})
        await reader.rollback()


async def read_then_write(engine: AsyncEngine, index: int) -> None:
    """Read the counter, yield to the other writers, then write it back plus one."""
    if index % 2:
        async with write_connection(engine) as conn:
            seen = await scalar(conn, "SELECT n FROM counter")
            await asyncio.sleep(0.01)
            await conn.execute(text("UPDATE counter SET n = :n"), {"n": seen + 1})
    else:
        async with write_session(create_sessionmaker(engine)) as session:
            seen = (await session.execute(text("SELECT n FROM counter"))).scalar_one()
            await asyncio.sleep(0.01)
            await session.execute(text("UPDATE counter SET n = :n"), {"n": seen + 1})


async def test_concurrent_writers_all_succeed(sqlite_engine: AsyncEngine) -> None:
    """Concurrent read-then-write transactions queue for the lock: none fails, none is lost."""
    results = await asyncio.gather(
        *(read_then_write(sqlite_engine, i) for i in range(WRITERS)), return_exceptions=True
    )
    assert [r for r in results if r is not None] == []
    async with sqlite_engine.connect() as conn:
        assert await scalar(conn, "SELECT n FROM counter") == WRITERS


async def test_sqlite_writers_of_one_process_take_turns_before_begin(
    sqlite_engine: AsyncEngine, statements: list[str]
) -> None:
    """Database.write() on SQLite queues writers of this process on a lock, so a second
    writer sends its BEGIN IMMEDIATE only once the first has committed (instead of
    waiting in SQLite's busy handler, which sleeps in steps of up to 100 ms)."""
    database = Database(sqlite_engine)
    first_inside, release = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with database.write() as session:
            await session.execute(text("UPDATE counter SET n = n + 1"))
            first_inside.set()
            await release.wait()

    async def second() -> None:
        async with database.write() as session:
            await session.execute(text("UPDATE counter SET n = n + 10"))

    holder = asyncio.create_task(first())
    await first_inside.wait()
    waiter = asyncio.create_task(second())
    await asyncio.sleep(0.05)
    assert statements.count("BEGIN IMMEDIATE") == 1 and not waiter.done()
    release.set()
    await asyncio.gather(holder, waiter)
    assert statements.count("BEGIN IMMEDIATE") == 2
    async with sqlite_engine.connect() as conn:
        assert await scalar(conn, "SELECT n FROM counter") == 11


async def test_concurrent_writers_on_module_database(settings: Settings, db: AsyncEngine) -> None:
    """The same holds on the migrated test database: each writer's read sees the last write."""
    require(settings, "sqlite")
    sessionmaker = create_sessionmaker(db)
    async with write_session(sessionmaker) as session:
        session.add(User(username="counter", password_hash="!", email="0"))

    async def bump() -> None:
        """Read the user's email as a number and store it plus one."""
        async with write_session(sessionmaker) as session:
            user = (await session.execute(select(User))).scalar_one()
            await asyncio.sleep(0.01)
            user.email = str(int(user.email or "0") + 1)

    await asyncio.gather(*(bump() for _ in range(WRITERS)))
    async with sessionmaker() as session:
        assert (await session.execute(select(User.email))).scalar_one() == str(WRITERS)


# --- write transactions on both databases ---------------------------------------------------


async def test_write_session_commits(db: AsyncEngine) -> None:
    """What a write_session adds is committed when the block ends."""
    sessionmaker = create_sessionmaker(db)
    async with write_session(sessionmaker) as session:
        session.add(User(username="written", password_hash="!"))
    async with sessionmaker() as other:
        names = (await other.execute(select(User.username))).scalars().all()
    assert names == ["written"]


async def test_write_session_rolls_back_on_error(db: AsyncEngine) -> None:
    """An exception inside a write_session leaves nothing behind."""
    sessionmaker = create_sessionmaker(db)
    with pytest.raises(RuntimeError, match="boom"):
        async with write_session(sessionmaker) as session:
            session.add(User(username="never", password_hash="!"))
            await session.flush()
            raise RuntimeError("boom")
    async with sessionmaker() as other:
        assert (await other.execute(select(User))).scalars().all() == []


async def test_write_connection_commits_and_rolls_back(db: AsyncEngine) -> None:
    """write_connection commits on success and rolls back on an exception."""
    insert = text(
        "INSERT INTO users (username, password_hash, is_admin, is_active, created_at)"
        " VALUES (:name, '!', false, true, CURRENT_TIMESTAMP)"
    )
    async with write_connection(db) as conn:
        await conn.execute(insert, {"name": "kept"})
    with pytest.raises(RuntimeError):
        async with write_connection(db) as conn:
            await conn.execute(insert, {"name": "dropped"})
            raise RuntimeError("boom")
    async with db.connect() as conn:
        names = (await conn.execute(text("SELECT username FROM users"))).scalars().all()
    assert names == ["kept"]


# --- sessions ------------------------------------------------------------------------------


async def test_sessions_do_not_expire_on_commit(db: AsyncEngine) -> None:
    """After commit, loaded attributes stay readable without a refresh (no lazy I/O)."""
    sessionmaker = create_sessionmaker(db)
    assert sessionmaker.kw["expire_on_commit"] is False
    async with sessionmaker() as session:
        user = User(username="kept-loaded", password_hash="!")
        session.add(user)
        await session.commit()
        state = inspect(user)
        assert not state.expired_attributes
        assert state.unloaded == {"memories"}  # only the lazy="raise" relationship
        # Reading these would raise MissingGreenlet if commit had expired them.
        assert user.username == "kept-loaded"
        assert user.id is not None
        assert user.created_at is not None
    # Still readable once the session is closed.
    assert user.username == "kept-loaded"


# --- PostgreSQL connections -----------------------------------------------------------------


async def test_postgres_pool(settings: Settings, engine: AsyncEngine) -> None:
    """PostgreSQL pool: 10 connections, 20 overflow, pre-ping."""
    require(settings, "postgresql")
    pool: Any = engine.pool
    assert pool.size() == 10
    assert pool._max_overflow == 20
    assert pool._pre_ping is True
    assert pool.timeout() == settings.db_pool_timeout


def test_postgres_pool_follows_settings() -> None:
    """DB_POOL_SIZE and DB_MAX_OVERFLOW reach the pool (no connection needed)."""
    settings = Settings(
        database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none",
        db_pool_size=3,
        db_max_overflow=4,
    )
    pool: Any = create_engine(settings).pool
    assert (pool.size(), pool._max_overflow, pool._pre_ping) == (3, 4, True)


async def test_postgres_server_settings(settings: Settings, engine: AsyncEngine) -> None:
    """Every PostgreSQL session runs with timezone UTC and JIT off."""
    require(settings, "postgresql")
    async with engine.connect() as first, engine.connect() as second:
        for conn in (first, second):
            assert await scalar(conn, "SHOW timezone") == "UTC"
            assert await scalar(conn, "SHOW jit") == "off"


# --- settings ------------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No DATABASE_URL or SECRET_KEY in the environment, and the cwd is an empty folder."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    "url",
    [
        "mysql+pymysql://user@localhost/db",
        "sqlite:///./memory_admin.db",
        "sqlite+pysqlite:///./memory_admin.db",
        "postgresql://user@localhost/db",
        "postgresql+psycopg://user@localhost/db",
        "oracle://user@localhost/db",
    ],
)
def test_unsupported_driver_is_refused(
    url: str, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A DATABASE_URL with another driver fails at start-up, naming the drivers that work."""
    monkeypatch.setenv("DATABASE_URL", url)
    with pytest.raises(ValidationError) as info:
        Settings()
    message = str(info.value)
    assert "DATABASE_URL must start with" in message
    assert "sqlite+aiosqlite" in message and "postgresql+asyncpg" in message


@pytest.mark.parametrize("url", ["not a url", "://", ""])
def test_malformed_database_url_is_refused(url: str, clean_env: Path) -> None:
    """Something that is not a URL at all is refused with a clear message."""
    with pytest.raises(ValidationError, match="DATABASE_URL"):
        Settings(database_url=url)


@pytest.mark.parametrize(
    "url",
    [
        "sqlite+aiosqlite:///./memory_admin.db",
        "sqlite+aiosqlite:///:memory:",
        "postgresql+asyncpg://user:pw@db.example:5432/memories",
    ],
)
def test_supported_drivers_are_accepted(
    url: str, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The two supported drivers pass, from the environment."""
    monkeypatch.setenv("DATABASE_URL", url)
    assert Settings().database_url == url


def test_secret_key_required_for_a_configured_database(clean_env: Path) -> None:
    """A non-default database without SECRET_KEY is a ConfigError, not a silent default."""
    for url in ("postgresql+asyncpg://u@h/db", f"sqlite+aiosqlite:///{clean_env / 'other.db'}"):
        with pytest.raises(ConfigError, match="SECRET_KEY is required"):
            Settings(database_url=url).resolve_secret_key()
    assert list(clean_env.iterdir()) == []


def test_empty_secret_key_counts_as_missing(clean_env: Path) -> None:
    """SECRET_KEY='' is as good as none."""
    with pytest.raises(ConfigError):
        Settings(database_url="postgresql+asyncpg://u@h/db", secret_key="").resolve_secret_key()


def test_given_secret_key_wins(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SECRET_KEY from the environment is used as is, and no key file is written."""
    monkeypatch.setenv("SECRET_KEY", "from-the-environment")
    assert Settings().resolve_secret_key() == "from-the-environment"
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://u@h/db")
    assert Settings().resolve_secret_key() == "from-the-environment"
    assert list(clean_env.iterdir()) == []


def test_default_database_generates_a_key_once(clean_env: Path) -> None:
    """On the default SQLite file a key is generated once, kept beside the db, then reused."""
    settings = Settings()
    assert settings.uses_default_database
    key = settings.resolve_secret_key()
    key_file = clean_env / "memory_admin.db.secret"
    assert key_file.read_text().strip() == key
    assert len(key) >= 40
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    assert settings.resolve_secret_key() == key
    assert Settings().resolve_secret_key() == key  # a later process reads the same file
    assert Settings(database_url=DEFAULT_DATABASE_URL).resolve_secret_key() == key


def test_generated_keys_differ_per_installation(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two installations (two working folders) get different keys."""
    first = Settings().resolve_secret_key()
    other = clean_env / "second"
    other.mkdir()
    monkeypatch.chdir(other)
    second = Settings().resolve_secret_key()
    assert first != second
    assert (other / "memory_admin.db.secret").read_text().strip() == second
