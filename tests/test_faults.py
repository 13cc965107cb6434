"""Database faults and concurrency: concurrent recalls, a small pool, killed connections.

The slow tests run the real `memory-admin serve --workers 2` in a subprocess on the
module's database (both backends), as an operator would, and talk to it over HTTP with an
API token.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field

import asyncpg
import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.conftest import _asyncpg_dsn, postgres_admin_url
from tests.factories import make_memory, make_token, make_user
from tests.serve_support import Server, open_client, serving
from tests.web_support import Visitor, parse
from webapp.db import create_sessionmaker
from webapp.db_errors import is_unavailable
from webapp.main import create_app
from webapp.models import LongTermMemory
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


@dataclass
class Storm:
    """What the clients saw: statuses, failures and the writes that were acknowledged."""

    allowed: frozenset[int]
    """Statuses that count as an answer besides a success (503, while connections die)."""
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    """Answers neither a success nor allowed, and requests that got no answer."""
    written: dict[str, str] = field(default_factory=dict)
    """key -> content of every write that was acknowledged (200 or 201)."""

    async def call(
        self, request: Awaitable[httpx.Response], *, html: bool = False
    ) -> httpx.Response | None:
        """Send request and note what came back; the response if it was a success."""
        try:
            response = await request
        except httpx.HTTPError as exc:
            self.failures.append(f"no answer: {exc!r}")
            return None
        self.statuses[response.status_code] += 1
        if response.status_code < 300:
            return response
        if response.status_code not in self.allowed:
            self.failures.append(f"{response.status_code}: {response.text[:300]}")
        elif html and "The database is unavailable" not in parse(response).get_text():
            self.failures.append(f"a 503 page without its message: {response.text[:300]}")
        elif not html and "database is unavailable" not in response.json()["detail"]:
            self.failures.append(f"a 503 without its message: {response.text[:300]}")
        return None


async def _kill_backends(database: str, stop: asyncio.Event) -> int:
    """pg_terminate_backend on every connection to database every KILL_EVERY seconds,
    until stop; how many it ended."""
    killer = await asyncpg.connect(_asyncpg_dsn(postgres_admin_url()), timeout=5)
    killed = 0
    try:
        while not stop.is_set():
            killed += await killer.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), KILL_EVERY)
    finally:
        await killer.close()
    return killed


async def _agent_calls(
    client: httpx.AsyncClient, agent: Agent, number: int, stop: asyncio.Event, storm: Storm
) -> None:
    """One agent's loop until stop: write a new memory, recall, search and list."""
    headers = {"Authorization": f"Bearer {agent.secret}"}
    sent = 0
    while not stop.is_set():
        sent += 1
        key, content = f"storm-{number}-{sent}", f"written by client {number}, request {sent}"
        body = {"namespace": "storm", "key": key, "content": content}
        if await storm.call(client.put("/api/v1/memories", json=body, headers=headers)):
            storm.written[key] = content
        recalled = {"namespace": "facts", "key": "m0"}
        await storm.call(client.get("/api/v1/recall", params=recalled, headers=headers))
        await storm.call(client.post("/api/v1/search", json={"query": "tea"}, headers=headers))
        await storm.call(client.get("/api/v1/memories", params={"limit": 5}, headers=headers))


async def _browsing(visitor: Visitor, stop: asyncio.Event, storm: Storm) -> None:
    """A logged-in person's loop until stop: the dashboard and the list of memories."""
    while not stop.is_set():
        await storm.call(visitor.get("/"), html=True)
        await storm.call(visitor.get("/memories"), html=True)


@pytest.mark.slow
async def test_killed_connections_answer_503_or_succeed_and_lose_no_write(
    db: AsyncEngine, session: AsyncSession, server: Server, settings: Settings
) -> None:
    """8 clients (7 agents, one person at a browser) while, on PostgreSQL, the app's
    connections are ended with pg_terminate_backend every 250 ms: each request succeeds or
    answers 503 with its message (JSON for the API, the error page for the browser), none
    gets a 500 or no answer, every acknowledged write is kept, and the app serves normally
    afterwards. On SQLite, nothing is killed, and every request must succeed."""
    killing = not settings.is_sqlite
    agent = await make_agent(session, memories=1)
    user = await make_user(session)
    storm = Storm(allowed=frozenset({503}) if killing else frozenset())
    stop = asyncio.Event()
    async with open_client(server) as client, open_client(server) as browser:
        visitor = Visitor(browser)
        assert (await visitor.log_in(user.username)).status_code == 303
        killer = asyncio.create_task(
            _kill_backends(make_url(settings.database_url).database or "", stop)
            if killing
            else stop.wait()
        )
        loops = [_agent_calls(client, agent, number, stop, storm) for number in range(7)]
        tasks = [asyncio.create_task(loop) for loop in [*loops, _browsing(visitor, stop, storm)]]
        await asyncio.sleep(STORM_SECONDS)
        stop.set()
        await asyncio.gather(*tasks)
        killed = await killer
    assert storm.failures == [], (storm.statuses, storm.failures[:5], server.output()[-3000:])
    assert storm.written, storm.statuses
    if killing:
        assert killed, "no connection was killed"
    stored = await stored_contents(db, "storm")
    lost = {key for key, content in storm.written.items() if stored.get(key) != content}
    assert lost == set(), f"{len(lost)} of {len(storm.written)} acknowledged writes lost"
    async with open_client(server) as client:  # recovered: every request succeeds again
        assert_all_ok(await recall_all(client, agent, ["m0"] * 20), server)


async def stored_contents(db: AsyncEngine, namespace: str) -> dict[str, str]:
    """key -> content of the memories in namespace, as the database holds them."""
    query = select(LongTermMemory.key, LongTermMemory.content).where(
        LongTermMemory.namespace == namespace
    )
    async with create_sessionmaker(db)() as session:
        return dict((await session.execute(query)).all())
