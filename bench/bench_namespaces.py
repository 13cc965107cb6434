#!/usr/bin/env python3
"""The namespace tree (/namespaces) at scale: the heaviest user's page and every user at once.

For each database given (a SQLite file, a PostgreSQL database, both already imported and
migrated; copies, as the bench logs in as an admin it creates) it times, alternately in
the same run:

    S1 namespace_health(user=HEAVY)   the service the page and GET /api/v1/namespaces use
    S0 the old GROUP BY               what it replaced (a GROUP BY over the user's rows)
    S2 namespace_health() as admin    every user's namespaces together (the admin's view)
    S3 the old GROUP BY, every user
    H0 GET /healthz                   the HTTP floor: the server's round trip, no page
    H1 GET /namespaces?user=HEAVY     the page over HTTP (uvicorn, one worker, keep-alive)
    H2 GET /namespaces                the admin's chooser: users with their namespace counts
    H3 every user's page at once      /namespaces?user=U for every user, CONCURRENCY clients

The S0/S3 floor is timed in the same run; the ratio ours/floor is what to compare across
machines. It checks that the page's figures for the heaviest user equal the old GROUP BY's.
Prints Markdown tables; never fails the exit status for a missed target.

    python bench/bench_namespaces.py --sqlite-path /tmp/m1m.db \\
        --postgres-url postgresql+asyncpg://postgres@127.0.0.1:5432/bench_copy
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from bench_http import create_admin, expect, log_in, new_client
from common import HEAVY_USER, Side
from harness import free_port, running_server, server_env
from sqlalchemy import Integer, case, func, select
from sqlmodel import col

from webapp.db import Database, create_engine
from webapp.models import LongTermMemory, User
from webapp.services.filters import state_condition
from webapp.services.namespaces import NamespaceHealth, namespace_health
from webapp.services.principal import Principal
from webapp.settings import Settings
from webapp.types import utcnow

SECRET = os.environ.get("SECRET_KEY", "bench-secret-key-0123456789abcdef0123456789")
HEAVY_P95_MS = 50.0
EVERYONE_P95_MS = 150.0
_c = LongTermMemory.__table__.c  # type: ignore[attr-defined]
FIGURES = re.compile(r"<dt>(Active|Expired|Deleted)</dt><dd>([\d,]+)</dd>")


async def old_group_by(db: Database, user: str | None) -> list[NamespaceHealth]:
    """The query namespace_health ran before the summary: every row of the scope, grouped."""
    now = utcnow()

    def counted(state: str) -> Any:
        return func.sum(case((state_condition(state, now=now), 1), else_=0)).cast(Integer)

    query = select(
        _c.namespace,
        counted("active"),
        counted("expired"),
        counted("deleted"),
        func.sum(case((state_condition("active", now=now), _c.importance), else_=0.0)),
        func.max(_c.updated_at),
    ).group_by(_c.namespace)
    if user is not None:
        owner = select(col(User.id)).where(col(User.username) == user).scalar_subquery()
        query = query.where(_c.user_id == owner)
    async with db.read() as session:
        rows = (await session.execute(query)).all()
    return [
        NamespaceHealth(
            namespace=ns, active=a, expired=e, deleted=d, importance_sum=float(i or 0.0)
        )
        for ns, a, e, d, i, _ in rows
    ]


async def time_alternately(
    runs: int, sides: dict[str, Callable[[], Awaitable[Any]]]
) -> dict[str, Side]:
    """Time each fetch runs times (after one warm-up), taking turns."""
    timings = {name: Side() for name in sides}
    for fetch in sides.values():
        await fetch()
    for _ in range(runs):
        for name, fetch in sides.items():
            start = time.perf_counter()
            await fetch()
            timings[name].times_ms.append((time.perf_counter() - start) * 1000)
    return timings


def counts_of(health: list[NamespaceHealth]) -> dict[str, tuple[int, int, int]]:
    """namespace -> (active, expired, deleted)."""
    return {h.namespace: (h.active, h.expired, h.deleted) for h in health}


async def every_user_at_once(
    base_url: str, cookies: httpx.Cookies, users: list[str], concurrency: int
) -> tuple[Side, float]:
    """Every user's page, from concurrency clients at once: each request's time, the wall."""
    side = Side()
    queue = list(users)

    async def client() -> None:
        async with new_client(base_url, cookies) as http:
            while queue:
                user = queue.pop()
                start = time.perf_counter()
                expect(await http.get("/namespaces", params={"user": user}), 200)
                side.times_ms.append((time.perf_counter() - start) * 1000)

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return side, time.perf_counter() - start


async def bench(name: str, url: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """All the measures on the database at url."""
    engine = create_engine(Settings(database_url=url, secret_key=SECRET))
    db = Database(engine)
    admin = Principal.operator()
    async with db.read() as session:
        users = list((await session.execute(select(col(User.username)))).scalars())
    ours = await namespace_health(db, principal=admin, user=HEAVY_USER)
    floor = await old_group_by(db, HEAVY_USER)
    if counts_of(ours) != counts_of(floor):
        raise SystemExit(f"{name}: the summary's counts differ from the GROUP BY's")
    service = await time_alternately(
        args.runs,
        {
            "S1": lambda: namespace_health(db, principal=admin, user=HEAVY_USER),
            "S0": lambda: old_group_by(db, HEAVY_USER),
        },
    )
    service |= await time_alternately(  # the old GROUP BY reads every row: a few runs
        min(args.runs, 3),
        {
            "S2": lambda: namespace_health(db, principal=admin),
            "S3": lambda: old_group_by(db, None),
        },
    )
    await engine.dispose()
    create_admin(server_env(url, SECRET))
    with running_server(url, SECRET, free_port(), tmp) as server:
        async with new_client(server.base_url) as http:
            await log_in(http)
            page = expect(await http.get("/namespaces", params={"user": HEAVY_USER}), 200).text
            shown = [int(v.replace(",", "")) for _, v in FIGURES.findall(page)]
            if not shown:
                raise SystemExit(f"{name}: the page shows no figures")
            pages = await time_alternately(
                args.runs,
                {
                    "H0": lambda: http.get("/healthz"),
                    "H1": lambda: http.get("/namespaces", params={"user": HEAVY_USER}),
                    "H2": lambda: http.get("/namespaces"),
                },
            )
            everyone, wall = await every_user_at_once(
                server.base_url, http.cookies, users, args.concurrency
            )
    return {"name": name, "service": service, "pages": pages, "everyone": everyone, "wall": wall}


def ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def report(result: dict[str, Any], users: int, concurrency: int) -> None:
    """Markdown tables for one database."""
    s, p = result["service"], result["pages"]
    print(f"\n### {result['name']}\n")
    print("| what | median ms | p95 ms | floor median | floor p95 | p95 ratio | target |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for ours, floor, label, target in (
        ("S1", "S0", f"service, heaviest user ({HEAVY_USER})", None),
        ("S2", "S3", "service, every user together", None),
    ):
        ratio = s[ours].p95 / s[floor].p95
        print(
            f"| {label} | {ms(s[ours].median)} | {ms(s[ours].p95)} | {ms(s[floor].median)} "
            f"| {ms(s[floor].p95)} | {ratio:.2f} | {target or ''} |"
        )
    h0 = p["H0"]
    print(f"| GET /healthz (HTTP floor) | {ms(h0.median)} | {ms(h0.p95)} | | | | |")
    for key, label, target in (
        ("H1", "GET /namespaces?user=heaviest", HEAVY_P95_MS),
        ("H2", "GET /namespaces (admin chooser, every user)", EVERYONE_P95_MS),
    ):
        verdict = "PASS" if p[key].p95 < target else "FAIL"
        ratio = p[key].p95 / s["S0" if key == "H1" else "S3"].p95
        print(
            f"| {label} | {ms(p[key].median)} | {ms(p[key].p95)} | | | {ratio:.2f} "
            f"| < {target:.0f} ms {verdict} |"
        )
    every = result["everyone"]
    verdict = "PASS" if every.p95 < EVERYONE_P95_MS else "FAIL"
    print(
        f"| every user's page at once ({users} pages, {concurrency} clients, "
        f"{result['wall']:.1f} s) | {ms(every.median)} | {ms(every.p95)} | | | "
        f"| < {EVERYONE_P95_MS:.0f} ms {verdict} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sqlite-path", type=Path, help="an imported, migrated SQLite copy")
    parser.add_argument("--postgres-url", help="an imported, migrated PostgreSQL copy")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    targets = []
    if args.sqlite_path:
        targets.append(("sqlite", f"sqlite+aiosqlite:///{args.sqlite_path.resolve()}"))
    if args.postgres_url:
        targets.append(("postgresql", args.postgres_url))
    if not targets:
        parser.error("give --sqlite-path and/or --postgres-url")
    with tempfile.TemporaryDirectory(prefix="ma-bench-ns-") as tmp:
        for name, url in targets:
            result = asyncio.run(bench(name, url, args, Path(tmp)))
            report(result, len(result["everyone"].times_ms), args.concurrency)


if __name__ == "__main__":
    main()
