#!/usr/bin/env python3
"""Contention for a minute, on SQLite and PostgreSQL: `memory-admin serve --workers 2`,
8 clients (7 agents of two users, one admin at the forms) writing, editing, deleting and
restoring the same memories (tests/concurrency_support.py, which tests/test_concurrency.py
runs for 10 s), then 8 simultaneous first writes of one key (--rounds times) and 100
simultaneous recalls of one memory. It prints what the clients saw, and what the database
contradicts of it: lost or doubled acknowledged writes, trails that do not lead to their
rows, a wrong access count. Not a test: it exits 1 on a problem and prints them.

    python bench/bench_concurrency.py --rows 20000 --duration 60
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
from harness import add_dataset_options, dataset, postgres_database, sqlite_database
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' workload

from tests.concurrency_support import Cast, contend, first_writes, lost_or_broken, prepare
from tests.serve_support import serving
from webapp.db import create_engine, create_sessionmaker
from webapp.models import LongTermMemory
from webapp.settings import Settings

SECRET = "bench-concurrency-secret-key"


async def recall_burst(url: str, database_url: str, cast: Cast, count: int) -> list[str]:
    """count recalls of one memory at once: each 200, and access_count up by count."""
    engine = create_engine(Settings(database_url=database_url, secret_key=SECRET))
    memory_id = cast.shared[1][0]
    query = select(LongTermMemory).where(LongTermMemory.id == memory_id)  # type: ignore[arg-type]
    try:
        async with create_sessionmaker(engine)() as session:
            memory = (await session.execute(query)).scalar_one()
            before, key = memory.access_count, memory.key
        headers = {"Authorization": f"Bearer {cast.secrets[1]}"}
        if memory.is_deleted:
            async with httpx.AsyncClient(base_url=url) as client:
                await client.post(f"/api/v1/memories/{memory_id}/restore", headers=headers)
        limits = httpx.Limits(max_connections=count)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
            params = {"namespace": "shared", "key": key}
            answers = await asyncio.gather(
                *(
                    client.get("/api/v1/recall", params=params, headers=headers)
                    for _ in range(count)
                )
            )
        async with create_sessionmaker(engine)() as session:
            after = (await session.execute(query)).scalar_one().access_count
    finally:
        await engine.dispose()
    problems = [f"recall {a.status_code}: {a.text[:200]}" for a in answers if a.status_code != 200]
    if after - before != count:
        problems.append(f"{count} recalls added {after - before} to access_count")
    return problems


async def prepared(database_url: str) -> Cast:
    engine = create_engine(Settings(database_url=database_url, secret_key=SECRET))
    try:
        async with create_sessionmaker(engine)() as session:
            return await prepare(session)
    finally:
        await engine.dispose()


async def checked(database_url: str, report: object) -> list[str]:
    engine = create_engine(Settings(database_url=database_url, secret_key=SECRET))
    try:
        return await lost_or_broken(engine, report)  # type: ignore[arg-type]
    finally:
        await engine.dispose()


def bench(name: str, database_url: str, args: argparse.Namespace, tmp: Path) -> list[str]:
    cast = asyncio.run(prepared(database_url))
    log_dir = Path(tempfile.mkdtemp(dir=tmp))
    with serving(database_url, SECRET, log_dir, workers=2) as server:
        started = time.monotonic()
        report = asyncio.run(contend(server.url, cast, args.duration, clients=args.clients))
        took = time.monotonic() - started
        races = asyncio.run(first_writes(server.url, cast, rounds=args.rounds))
        recalls = asyncio.run(recall_burst(server.url, database_url, cast, 100))
        log = server.output()
    problems = list(report.problems) + recalls
    problems += [f"first writes gave {dict(r)}" for r in races if r != Counter({201: 1, 200: 7})]
    problems += asyncio.run(checked(database_url, report))
    if "database is locked" in log:
        problems.append("'database is locked' in the server's log")
    requests = sum(report.statuses.values())
    print(f"\n### {name}: {args.clients} clients for {took:.0f} s, 2 workers\n")
    print(f"{requests:,} requests ({requests / took:,.0f}/s); by answer:")
    for what, count in sorted(report.statuses.items()):
        print(f"  {what:<20} {count:>7,}")
    acknowledged = len(report.acks) + len(report.form_contents)
    print(f"acknowledged writes, each checked against the trail: {acknowledged:,}")
    print(f"stale edits refused with 409: {report.stale_refused:,}")
    print(f"then {args.rounds} rounds of 8 first writes of a key, 100 recalls of one memory")
    print(f"problems: {len(problems)}")
    for problem in problems[:20]:
        print(f"  - {problem}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["sqlite", "postgresql"], help="one database only")
    add_dataset_options(parser)
    parser.set_defaults(rows=20_000)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of contention")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=20, help="rounds of 8 first writes")
    args = parser.parse_args()
    problems = []
    with tempfile.TemporaryDirectory(prefix="ma-bench-concurrency-") as tmp:
        data = dataset(args, Path(tmp))
        for name in ("sqlite", "postgresql"):
            if args.only not in (None, name):
                continue
            if name == "sqlite":
                with sqlite_database(args, data) as path:
                    url = f"sqlite+aiosqlite:///{path.resolve()}"
                    problems += bench(name, url, args, Path(tmp))
            else:
                with postgres_database(args, data) as url:
                    problems += bench(name, url, args, Path(tmp))
    raise SystemExit(1 if problems else 0)


if __name__ == "__main__":
    main()
