"""The detail page's history: memory_history on a memory with 1, 50 and 500 events,
against get_memory (one primary-key read) as the floor, on a fresh SQLite file and on
PostgreSQL (TEST_POSTGRES_URL's server, a database created and dropped). Prints a
Markdown table; never fails for a miss.

    .venv/bin/python bench/bench_history.py --runs 200
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from harness import pg_admin

from webapp import migrate
from webapp.db import Database, create_engine
from webapp.models import MemoryCreate, MemoryUpdate, User
from webapp.services import memories
from webapp.services.history import memory_history
from webapp.services.principal import Principal
from webapp.settings import Settings

EVENTS = (1, 50, 500)


def p95(times: list[float]) -> float:
    return statistics.quantiles(times, n=20)[-1] if len(times) > 1 else times[0]


async def _timed(runs: int, call: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    for _ in range(5):
        await call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        await call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), p95(times)


async def measure(url: str, runs: int) -> list[tuple[str, float, float]]:
    engine = create_engine(Settings(database_url=url, secret_key="bench-secret"))
    await migrate.upgrade(engine)
    db = Database(engine)
    async with db.write() as session:
        user = User(username="bench", password_hash="x")
        session.add(user)
    principal = Principal.of_user(user)
    rows = []
    try:
        for events in EVENTS:
            data = MemoryCreate(namespace="bench", key=f"k{events}", content="c0")
            memory = (await memories.remember(db, principal=principal, data=data)).memory
            assert memory.id is not None
            memory_id = memory.id
            for n in range(1, events):
                change = MemoryUpdate(content=f"line one\nline {n}\nline three")
                await memories.update_memory(
                    db, principal=principal, memory_id=memory_id, changes=change
                )
            current = await memories.get_memory(db, principal=principal, memory_id=memory_id)

            async def floor(memory_id: int = memory_id) -> None:
                await memories.get_memory(db, principal=principal, memory_id=memory_id)

            async def history(current: Any = current) -> None:
                await memory_history(db, principal=principal, memory=current)

            if events == EVENTS[0]:
                rows.append(("get_memory (floor)", *await _timed(runs, floor)))
            rows.append((f"memory_history, {events} events", *await _timed(runs, history)))
    finally:
        await engine.dispose()
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    admin = os.environ.get("TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    name = f"bench_history_{uuid.uuid4().hex[:8]}"
    pg_url = admin.rsplit("/", 1)[0] + f"/{name}"
    results: dict[str, list[tuple[str, float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = await measure(f"sqlite+aiosqlite:///{Path(tmp) / 'h.db'}", args.runs)
    await pg_admin(admin, f'CREATE DATABASE "{name}"')
    try:
        results["postgresql"] = await measure(pg_url, args.runs)
    finally:
        await pg_admin(admin, f'DROP DATABASE "{name}"')
    print("| backend | call | p50 ms | p95 ms | p95 / floor p95 |")
    print("|---|---|---:|---:|---:|")
    for backend, rows in results.items():
        floor95 = rows[0][2]
        for label, p50, p95_ms in rows:
            print(f"| {backend} | {label} | {p50:.2f} | {p95_ms:.2f} | {p95_ms / floor95:.1f}x |")


if __name__ == "__main__":
    asyncio.run(main())
