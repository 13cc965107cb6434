#!/usr/bin/env python3
"""p95 of the /duplicates page's database work for the heaviest user.

Against DATABASE_URL (an imported, migrated database; SQLite or PostgreSQL) it finds the
user with the most memories, gives their memories without a vector one (--embed-missing:
the model at ~250 rows/s; at 1M rows run `memory-admin embed` first instead), then times

    cold   the first duplicates.groups(): all-pairs comparison of the user's vectors
           (a numpy product in chunks) and the write of duplicate_pair, once
    warm   duplicates.groups() at 0.90 and 0.80 --runs times each: the refresh finding
           nothing new (two indexed reads) and the pairs read, components, member rows
    page   GET /duplicates?user=NAME through the ASGI app as a logged-in admin (bench
           user `bench-dups`, created once), --runs times: the above plus rendering

With --backlog N, the page is timed while the app embeds: N new memories of the user
(copies of their latest N, in namespace bench/backlog) wait for their vectors when the
app starts, and its background embedder gives them vectors during the page's runs (--gap
seconds apart: the embedder waits for a pause in the requests), so most visits find new
vectors to bring the forest up to date with; it reports how many
were embedded meanwhile. It prints a Markdown table with PASS/FAIL against p95 < 500 ms.
Not a test: numbers vary with the machine's load. It writes vectors, duplicate_pair rows,
one admin user and (--backlog) memories.

    DATABASE_URL=sqlite+aiosqlite:////tmp/d20k.db python bench/bench_duplicates.py --embed-missing
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import time

import httpx
from sqlalchemy import delete, func, insert, literal, select

from webapp.db import Database, create_engine
from webapp.main import create_app
from webapp.models import (
    DuplicatePair,
    DuplicateWatermark,
    EmbeddingQueue,
    LongTermMemory,
    MemoryEmbedding,
    User,
)
from webapp.services import duplicates, vectors
from webapp.services.users import hash_password
from webapp.settings import get_settings

BENCH_USER, BENCH_PASSWORD = "bench-dups", "bench-dups-password"


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1] if len(samples) > 1 else samples[0]


_m = LongTermMemory.__table__  # type: ignore[attr-defined]
_e = MemoryEmbedding.__table__  # type: ignore[attr-defined]
_u = User.__table__  # type: ignore[attr-defined]


async def heaviest(db: Database) -> tuple[int, str, int]:
    m, users = _m.c, _u.c
    query = (
        select(m.user_id, users.username, func.count())
        .select_from(_m)
        .join(_u, users.id == m.user_id)
        .group_by(m.user_id, users.username)
        .order_by(func.count().desc())
        .limit(1)
    )
    async with db.read() as session:
        user_id, name, count = (await session.execute(query)).one()
    return user_id, name, count


async def embed_missing(db: Database, user_id: int) -> int:
    """Queue the user's memories that have no vector (a database loaded before the queue
    existed) and embed them, as `memory-admin embed --user` does."""
    m, e = _m.c, _e.c
    queued = EmbeddingQueue.__table__.c  # type: ignore[attr-defined]
    missing = (
        select(m.id, m.user_id)
        .select_from(_m)
        .outerjoin(_e, e.memory_id == m.id)
        .outerjoin(EmbeddingQueue, queued.memory_id == m.id)
        .where(m.user_id == user_id, e.seq.is_(None), queued.seq.is_(None))
    )
    async with db.write() as session:
        await session.execute(insert(EmbeddingQueue).from_select(["memory_id", "user_id"], missing))
    done = 0
    while written := await vectors.drain(db, batch=256, user_id=user_id):
        done += written
    return done


async def queue_backlog(db: Database, user_id: int, count: int) -> None:
    """Copies of the user's latest count memories, new to the embedding queue (its
    triggers), as an agent's burst of writes would leave them."""
    m = _m.c
    run = f"{time.time_ns():x}"
    latest = (
        select(
            m.user_id,
            literal("bench/backlog").label("namespace"),
            (m.key + literal(f"-{run}")).label("key"),
            m.content,
            m.tags,
            m.importance,
            literal(0).label("access_count"),
            literal(1).label("version"),
            m.created_at,
            m.updated_at,
        )
        .where(m.user_id == user_id, m.namespace != "bench/backlog")
        .order_by(m.id.desc())
        .limit(count)
    )
    columns = ["user_id", "namespace", "key", "content", "tags", "importance"]
    columns += ["access_count", "version", "created_at", "updated_at"]
    async with db.write() as session:
        await session.execute(insert(LongTermMemory).from_select(columns, latest))


async def queued(db: Database, user_id: int) -> int:
    q = EmbeddingQueue.__table__.c  # type: ignore[attr-defined]
    async with db.read() as session:
        return int(await session.scalar(select(func.count()).where(q.user_id == user_id)) or 0)


async def not_compared(db: Database, user_id: int) -> int:
    """The user's vectors newer than the forest's watermark: 0 once the views (or the
    background comparison they started) brought the forest up to date."""
    mark = DuplicateWatermark.__table__.c  # type: ignore[attr-defined]
    async with db.read() as session:
        seq = await session.scalar(select(mark.seq).where(mark.user_id == user_id)) or 0
        newer = select(func.count()).where(_e.c.user_id == user_id, _e.c.seq > seq)
        return int(await session.scalar(newer) or 0)


async def ensure_admin(db: Database) -> None:
    async with db.write() as session:
        found = await session.scalar(select(User).where(User.username == BENCH_USER))  # type: ignore[arg-type]
        if found is None:
            session.add(
                User(
                    username=BENCH_USER, password_hash=hash_password(BENCH_PASSWORD), is_admin=True
                )
            )


async def page_times(name: str, runs: int, gap: float = 0.0) -> list[float]:
    app = create_app()
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://bench") as client,
    ):
        login = await client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', login.text)
        assert token is not None
        fields = {"username": BENCH_USER, "password": BENCH_PASSWORD, "csrf_token": token[1]}
        await client.post("/login", data=fields)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            response = await client.get(f"/duplicates?user={name}", headers={"accept": "text/html"})
            times.append(time.perf_counter() - start)
            assert response.status_code == 200, response.text[:500]
            await asyncio.sleep(gap)
    return times


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--embed-missing", action="store_true")
    parser.add_argument("--cold", action="store_true", help="forget the user's pairs first")
    parser.add_argument(
        "--backlog", type=int, default=0, help="time the page while N new memories are embedded"
    )
    parser.add_argument(
        "--gap", type=float, default=0.3, help="with --backlog: seconds between page views"
    )
    args = parser.parse_args()
    engine = create_engine(get_settings())
    db = Database(engine)
    user_id, name, count = await heaviest(db)
    print(f"heaviest user: {name} ({count} memories), {engine.dialect.name}")
    if args.embed_missing:
        start = time.perf_counter()
        print(f"embedded {await embed_missing(db, user_id)} in {time.perf_counter() - start:.1f} s")
    if args.cold:
        async with db.write() as session:
            await session.execute(delete(DuplicatePair).where(DuplicatePair.user_id == user_id))  # type: ignore[arg-type]
            await session.execute(
                delete(DuplicateWatermark).where(DuplicateWatermark.user_id == user_id)  # type: ignore[arg-type]
            )
    start = time.perf_counter()
    groups = await duplicates.groups(db, user_id, 0.90)
    cold = time.perf_counter() - start
    rows = [("first groups() (refresh)", [cold])]
    for threshold in (0.90, 0.80):
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            await duplicates.groups(db, user_id, threshold)
            times.append(time.perf_counter() - start)
        rows.append((f"groups() at {threshold:.2f}", times))
    await ensure_admin(db)
    if args.backlog:
        await queue_backlog(db, user_id, args.backlog)
    waiting = await queued(db, user_id)
    page = await page_times(name, args.runs, args.gap if args.backlog else 0.0)
    embedded = waiting - await queued(db, user_id)
    behind = await not_compared(db, user_id)
    await engine.dispose()
    rows.append(
        (f"GET /duplicates (ASGI; {embedded} of {waiting} queued embedded meanwhile)", page)
    )
    print(f"{len(groups)} groups at 0.90; after the views, {behind} vectors not compared yet\n")
    print("| what | runs | median ms | p95 ms | max ms | target |\n|---|---|---|---|---|---|")
    for label, times in rows:
        verdict = "" if len(times) == 1 else ("PASS" if p95(times) < 0.5 else "FAIL")
        print(
            f"| {label} | {len(times)} | {statistics.median(times) * 1000:.1f} "
            f"| {p95(times) * 1000:.1f} | {max(times) * 1000:.1f} | {verdict} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
