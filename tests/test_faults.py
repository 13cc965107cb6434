"""Database faults and concurrency: concurrent recalls, a small pool, killed connections.

The slow tests run the real `memory-admin serve --workers 2` in a subprocess on the
module's database (both backends), as an operator would, and talk to it over HTTP with an
API token.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlmodel import col

from tests.conftest import generate
from tests.factories import make_memory, make_token, make_user
from tests.serve_support import Server, open_client, serving
from webapp.db import Database, create_engine, create_sessionmaker
from webapp.db_errors import is_unavailable
from webapp.main import create_app
from webapp.models import LongTermMemory, User
from webapp.settings import Settings

STORM_SECONDS = 8.0
"""How long the clients send requests while connections are being killed."""
KILL_EVERY = 0.25
"""Seconds between two rounds of pg_terminate_backend."""


@pytest.fixture(scope="module")
def server(
    settings: Settings, engine: AsyncEngine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """`memory-admin serve --workers 2` on the module's migrated database."""
    with serving(
        settings.database_url, "faults-test-secret-key", tmp_path_factory.mktemp("serve")
    ) as served:
        yield served


@dataclass
class Agent:
    """A user's API token, and the ids of their memories (keys m0, m1, ... in `facts`)."""

    secret: str
    memory_ids: list[int]


async def make_agent(session: AsyncSession, *, memories: int) -> Agent:
    """A user with an API token and `memories` memories."""
    user = await make_user(session)
    _token, secret = await make_token(session, user=user, name="agent")
    ids = []
    for number in range(memories):
        memory = await make_memory(session, user=user, key=f"m{number}")
        assert memory.id is not None
        ids.append(memory.id)
    return Agent(secret=secret, memory_ids=ids)


async def access_counts(db: AsyncEngine, ids: list[int]) -> dict[int, int]:
    """access_count of each memory in ids, as the database holds it."""
    query = select(LongTermMemory.id, LongTermMemory.access_count).where(
        LongTermMemory.id.in_(ids)  # type: ignore[union-attr]
    )
    async with create_sessionmaker(db)() as session:
        return dict((await session.execute(query)).all())


async def recall_all(
    client: httpx.AsyncClient, agent: Agent, keys: list[str]
) -> list[httpx.Response]:
    """GET /api/v1/recall of each key at once."""
    headers = {"Authorization": f"Bearer {agent.secret}"}
    return await asyncio.gather(
        *(
            client.get("/api/v1/recall", params={"namespace": "facts", "key": key}, headers=headers)
            for key in keys
        )
    )


def assert_all_ok(responses: list[httpx.Response], server: Server | None = None) -> None:
    """Every response is a 200; else the statuses seen, a failed body and the server's log."""
    statuses = Counter(response.status_code for response in responses)
    failed = [response.text for response in responses if response.status_code != 200]
    log = server.output()[-3000:] if server else ""
    assert statuses == {200: len(responses)}, (statuses, failed[:1], log)


async def test_a_request_takes_one_pooled_connection_at_most(
    db: AsyncEngine, session: AsyncSession, settings: Settings
) -> None:
    """With a pool of one connection, 20 concurrent recalls (the first one also marks the
    token used) each answer 200 and count once: a request reads and writes on one
    connection, and never holds it while waiting for another."""
    agent = await make_agent(session, memories=1)
    one = settings.model_copy(update={"db_pool_size": 1, "db_max_overflow": 0})
    app = create_app(one)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://agent") as client:
            responses = await recall_all(client, agent, ["m0"] * 20)
    finally:
        await app.state.engine.dispose()
    assert_all_ok(responses)
    assert await access_counts(db, agent.memory_ids) == {agent.memory_ids[0]: 20}


async def test_a_writer_waiting_for_a_connection_never_holds_up_the_others(
    session: AsyncSession, settings: Settings
) -> None:
    """A request holds the only pooled connection and then writes, while a background
    writer (outside any request, as the embedder writes) waits for a connection: both
    finish. A writer that took its turn before its connection waited for one the request
    held, while the request waited for the turn, until the pool timed out."""
    user = await make_user(session)
    one = settings.model_copy(
        update={"db_pool_size": 1, "db_max_overflow": 0, "db_pool_timeout": 5.0}
    )
    database = Database(create_engine(one))
    request_reading, stamped = asyncio.Event(), update(User).where(col(User.id) == user.id)

    async def request() -> None:
        async with database.pinned_reads():
            async with database.read() as reading:
                await reading.execute(select(User.id))
            request_reading.set()
            await asyncio.sleep(0.2)  # the background writer is waiting meanwhile
            async with database.write() as writing:
                await writing.execute(stamped.values(email="request@example.org"))

    async def background() -> None:
        await request_reading.wait()
        async with database.write() as writing:
            await writing.execute(stamped.values(email="background@example.org"))

    try:
        await asyncio.wait_for(asyncio.gather(request(), background()), timeout=4)
        async with database.read() as reading:
            email = await reading.execute(select(User.email).where(col(User.id) == user.id))
            assert email.scalar_one() == "background@example.org"
    finally:
        await database.engine.dispose()


def _caused_by(error: Exception, which: str) -> Exception:
    """error as SQLAlchemy raises it from asyncpg's deadlock or serialization failure."""
    cause = asyncpg.DeadlockDetectedError if which == "deadlock" else asyncpg.SerializationError
    error.__cause__ = cause("ended to let another transaction go on")
    return error


@pytest.mark.parametrize(
    ("error", "unavailable"),
    [
        (OperationalError("SELECT 1", {}, Exception("database is locked")), True),
        (PoolTimeout("QueuePool limit of size 10 overflow 20 reached"), True),
        (ConnectionRefusedError(111, "Connect call failed"), True),
        (TimeoutError(), True),
        (DBAPIError("SELECT 1", {}, Exception("closed"), connection_invalidated=True), True),
        (DBAPIError("SELECT 1", {}, Exception("syntax error")), False),
        (IntegrityError("INSERT", {}, Exception("duplicate key")), False),
        (_caused_by(DBAPIError("UPDATE", {}, Exception("deadlock detected")), "deadlock"), True),
        (_caused_by(DBAPIError("UPDATE", {}, Exception("could not serialize")), "serial"), True),
    ],
)
def test_which_errors_mean_the_database_is_unavailable(error: Exception, unavailable: bool) -> None:
    """Those answer 503; the others are bugs or conflicts and keep their own handling."""
    assert is_unavailable(error) is unavailable


@pytest.mark.slow
async def test_concurrent_recalls_of_one_memory_each_count_once(
    db: AsyncEngine, session: AsyncSession, server: Server
) -> None:
    """100 recalls of one memory at once: 100 answers of 200, and access_count is 100."""
    agent = await make_agent(session, memories=1)
    async with open_client(server) as client:
        responses = await recall_all(client, agent, ["m0"] * 100)
    assert_all_ok(responses, server)
    assert sorted(response.json()["access_count"] for response in responses) == list(range(1, 101))
    assert await access_counts(db, agent.memory_ids) == {agent.memory_ids[0]: 100}


@pytest.mark.slow
async def test_concurrent_recalls_of_many_memories_each_count_once(
    db: AsyncEngine, session: AsyncSession, server: Server
) -> None:
    """1,000 recalls at once, 10 of each of 100 memories: each answers 200 and counts once."""
    agent = await make_agent(session, memories=100)
    async with open_client(server) as client:
        responses = await recall_all(client, agent, [f"m{n % 100}" for n in range(1_000)])
    assert_all_ok(responses, server)
    assert await access_counts(db, agent.memory_ids) == dict.fromkeys(agent.memory_ids, 10)


# --- killed connections (PostgreSQL) ------------------------------------------------------


async def _shape(engine: AsyncEngine) -> dict[str, object]:
    """What a failed import must leave as it was: the rows and the indexes."""
    async with engine.connect() as connection:
        counts = {
            table: (await connection.exec_driver_sql(f"SELECT count(*) FROM {table}")).scalar()
            for table in ("long_term_memory", "memory_event", "users", "embedding_queue")
        }
        if engine.dialect.name == "sqlite":
            listed = "SELECT name FROM sqlite_master WHERE type = 'index' ORDER BY name"
        else:
            listed = "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"
        indexes = list((await connection.exec_driver_sql(listed)).scalars())
    return {"counts": counts, "indexes": indexes}


async def _writing(engine: AsyncEngine, database: Path | None) -> bool:
    """Whether the import has begun writing: SQLite's WAL has grown, or PostgreSQL runs
    one of its INSERTs."""
    if database is not None:
        wal = database.with_name(database.name + "-wal")
        return wal.exists() and wal.stat().st_size > 1_000_000
    async with engine.connect() as connection:
        busy = await connection.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND state = 'active' AND query ILIKE 'INSERT%'"
        )
        return bool(busy.scalar())


@pytest.mark.slow
async def test_an_import_killed_halfway_leaves_the_database_as_before(
    db: AsyncEngine, settings: Settings, gen_memories: Path, tmp_path: Path
) -> None:
    """`memory-admin import` ended with SIGKILL while it writes: no memory, event, user or
    queued vector of it stays, and the indexes it set aside for a load into an empty
    table are all there."""
    data = generate(gen_memories, tmp_path / "memories.jsonl", "--memories", "60000")
    before = await _shape(db)
    env = {**os.environ, "DATABASE_URL": settings.database_url, "SECRET_KEY": "faults-secret"}
    env.pop("MEMORY_ADMIN_DEBUG", None)
    importing = subprocess.Popen(
        [sys.executable, "-m", "webapp.cli", "import", str(data)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    database = settings.sqlite_path
    deadline = time.monotonic() + 120
    while not await _writing(db, database):
        assert importing.poll() is None, "the import ended before it was killed: use more rows"
        assert time.monotonic() < deadline, "the import never began writing"
        await asyncio.sleep(0.05)
    importing.kill()
    importing.wait(timeout=30)
    assert await _shape(db) == before
