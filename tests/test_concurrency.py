"""Contention on both databases through `memory-admin serve --workers 2`: 8 clients
writing, editing, deleting and restoring the same memories through the API and the admin
forms (tests/concurrency_support.py), then the database checked against every answer.
bench/bench_concurrency.py runs the same for a minute."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.concurrency_support import contend, first_writes, lost_or_broken, prepare
from tests.serve_support import Server, serving
from webapp.settings import Settings

pytestmark = pytest.mark.slow

SECONDS = 10.0


@pytest.fixture(scope="module")
def server(
    settings: Settings, engine: AsyncEngine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    log_dir = tmp_path_factory.mktemp("serve")
    with serving(settings.database_url, "concurrency-test-secret-key", log_dir) as served:
        yield served


async def test_eight_clients_on_the_same_memories_lose_nothing(
    db: AsyncEngine, session: AsyncSession, server: Server
) -> None:
    """No 5xx, no "database is locked", stale edits refused with 409, and every
    acknowledged write is in the trail that leads to the final rows."""
    cast = await prepare(session)
    report = await contend(server.url, cast, SECONDS)
    assert report.problems == [], (report.problems[:5], server.output()[-2000:])
    assert "database is locked" not in server.output()
    assert len(report.acks) > 50 and report.form_contents, report.statuses
    assert report.stale_refused > 0, report.statuses
    for action in ("PUT", "PATCH", "DELETE", "restore", "form edit"):
        assert any(k.startswith(f"{action} 2") or k == f"{action} 303" for k in report.statuses)
    assert await lost_or_broken(db, report) == []


async def test_simultaneous_first_writes_of_a_key_give_one_201(
    db: AsyncEngine, session: AsyncSession, server: Server
) -> None:
    cast = await prepare(session)
    for statuses in await first_writes(server.url, cast, rounds=10):
        assert statuses == Counter({201: 1, 200: 7}), statuses
