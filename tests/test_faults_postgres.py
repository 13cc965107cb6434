"""PostgreSQL faults on a server of the test's own (tests/postgres_instance.py), never the
machine's shared one: stopped while the app runs, and its connections ended under traffic.
The app runs as `memory-admin serve --workers 2`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass, field

import asyncpg
import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.factories import make_user
from tests.postgres_instance import Instance, own_postgres
from tests.serve_support import Server, open_client, serving
from tests.test_faults import Agent, assert_all_ok, make_agent, recall_all
from tests.web_support import Visitor, parse
from webapp import migrate
from webapp.db import create_engine, create_sessionmaker
from webapp.models import LongTermMemory
from webapp.settings import Settings

pytestmark = pytest.mark.slow

SECRET = "faults-postgres-secret-key"
STORM_SECONDS = 15.0
"""How long the clients send requests while connections are being killed."""
KILL_EVERY = 0.25
"""Seconds between two rounds of pg_terminate_backend."""
ANSWER_WITHIN = 5.0
"""Seconds in which a request must be answered while the server is down."""


@pytest.fixture(scope="module")
def instance() -> Iterator[Instance]:
    with own_postgres() as server:
        yield server


@pytest.fixture(scope="module")
async def own_engine(instance: Instance) -> AsyncIterator[AsyncEngine]:
    """The migrated database of the instance."""
    engine = create_engine(Settings(database_url=instance.url, secret_key=SECRET))
    await migrate.upgrade(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
async def session(own_engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with create_sessionmaker(own_engine)() as opened:
        yield opened


@pytest.fixture(scope="module")
def server(
    instance: Instance, own_engine: AsyncEngine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    with serving(instance.url, SECRET, tmp_path_factory.mktemp("serve")) as served:
        yield served


async def _answer(request: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await request
    return response, time.monotonic() - started


async def test_a_stopped_server_is_a_503_within_5_s_and_the_app_recovers_by_itself(
    instance: Instance, session: AsyncSession, server: Server
) -> None:
    agent = await make_agent(session, memories=1)
    user = await make_user(session)
    headers = {"Authorization": f"Bearer {agent.secret}"}
    async with open_client(server) as client, open_client(server) as browser:
        visitor = Visitor(browser)
        assert (await visitor.log_in(user.username)).status_code == 303
        instance.stop()
        try:
            for _ in range(3):  # each worker, and a pool that had connections before
                api, took = await _answer(client.get("/api/v1/memories", headers=headers))
                assert (api.status_code, took < ANSWER_WITHIN) == (503, True), (api.text, took)
                assert "database is unavailable" in api.json()["detail"]
                page, took = await _answer(visitor.get("/memories"))
                assert (page.status_code, took < ANSWER_WITHIN) == (503, True), (page.text, took)
                assert "The database is unavailable" in parse(page).get_text()
        finally:
            instance.start()
        deadline = time.monotonic() + 30
        while True:  # no restart of the app: the pool finds the server again
            api = await client.get("/api/v1/memories", headers=headers)
            page = await visitor.get("/memories")
            if api.status_code == page.status_code == 200:
                break
            assert time.monotonic() < deadline, (api.text, page.text, server.output()[-2000:])
            await asyncio.sleep(0.5)
        assert_all_ok(await recall_all(client, agent, ["m0"] * 10), server)


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


async def _kill_backends(instance: Instance, stop: asyncio.Event) -> int:
    """pg_terminate_backend on every connection to the app's database every KILL_EVERY
    seconds, until stop; how many it ended."""
    killer = await asyncpg.connect(instance.admin_dsn, timeout=5)
    killed = 0
    try:
        while not stop.is_set():
            killed += await killer.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = 'app' AND pid <> pg_backend_pid()",
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


async def test_killed_connections_answer_503_or_succeed_and_lose_no_write(
    instance: Instance, own_engine: AsyncEngine, session: AsyncSession, server: Server
) -> None:
    """8 clients (7 agents, one person at a browser) while the app's connections are
    ended with pg_terminate_backend every 250 ms for 15 s: each request succeeds or
    answers 503 with its message (JSON for the API, the error page for the browser), none
    gets a 500 or no answer, every acknowledged write is kept, and the app serves normally
    afterwards."""
    agent = await make_agent(session, memories=1)
    user = await make_user(session)
    storm = Storm(allowed=frozenset({503}))
    stop = asyncio.Event()
    async with open_client(server) as client, open_client(server) as browser:
        visitor = Visitor(browser)
        assert (await visitor.log_in(user.username)).status_code == 303
        killer = asyncio.create_task(_kill_backends(instance, stop))
        loops = [_agent_calls(client, agent, number, stop, storm) for number in range(7)]
        tasks = [asyncio.create_task(loop) for loop in [*loops, _browsing(visitor, stop, storm)]]
        await asyncio.sleep(STORM_SECONDS)
        stop.set()
        await asyncio.gather(*tasks)
        killed = await killer
    assert storm.failures == [], (storm.statuses, storm.failures[:5], server.output()[-3000:])
    assert storm.written, storm.statuses
    assert killed, "no connection was killed"
    stored = await stored_contents(own_engine, "storm")
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
