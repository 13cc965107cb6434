#!/usr/bin/env python3
"""Latency of the people screens' queries on a loaded database, against a raw-SQL floor.

Given a SQLite file and/or a PostgreSQL database already loaded (bench_queries.py --keep
leaves both; any copy of a 1M-row import will do), it times, alternating with the floor:

    P1 the first page of /users: 50 users by name with their memory counts per state
       (services.people.people_page: the page, one more name, the total)
    P2 `memory-admin users`: every user with their counts (services.users.list_users with
       no limit: three grouped counts over the whole table)

Each floor is the same work in hand-written SQL through the raw driver (sqlite3,
asyncpg): the users, then three GROUP BY user_id counts (all rows, the deleted, the
expired) that the user_id index and the partial Trash and expiry indexes answer alone.
(One GROUP BY counting the three states with CASE reads every row instead: 0.5 to 3 s.)
On PostgreSQL, VACUUM ANALYZE a freshly copied database first, or the counts cannot be
index-only scans. It prints median and p95 (nearest rank) in ms and their ratio to
the floor's median. Not a test: numbers vary with the machine's load. Reads only.

    python bench/bench_people.py --sqlite-path /tmp/m1m-copy.db --postgres-url postgresql+asyncpg://...
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from common import Raw, RawPostgres, RawSqlite, Side, timed

from webapp.db import Database, create_engine
from webapp.services.people import PAGE_SIZE, people_page
from webapp.services.users import list_users
from webapp.settings import Settings

P1_FLOOR_USERS = "SELECT id FROM users ORDER BY username LIMIT ?"
COUNT = "SELECT user_id, count(*) AS n FROM long_term_memory {where} GROUP BY user_id"
STATES = {
    "sqlite": ("is_deleted IS 1", "is_deleted IS 0 AND expires_at <= ?"),
    "postgresql": ("is_deleted IS TRUE", "is_deleted IS FALSE AND expires_at <= ?"),
}
"""The deleted and the expired condition as the partial Trash and expiry indexes say them."""


async def floor_counts(raw: Raw, user_ids: list[int] | None) -> None:
    """The three grouped counts (all, deleted, expired) by hand, for user_ids or everyone."""
    scope = f"user_id IN ({', '.join('?' for _ in user_ids)})" if user_ids else ""
    ids = user_ids or []
    deleted, expired = STATES[raw.dialect]
    for condition, params in (("", ()), (deleted, ()), (expired, (raw.now(),))):
        where = " AND ".join(part for part in (scope, condition) if part)
        await raw.fetch(COUNT.format(where=f"WHERE {where}" if where else ""), *ids, *params)


async def bench_one(
    name: str, url: str, raw: Raw, runs: int, warmup: int
) -> list[tuple[str, Side, Side]]:
    """Time P1 and P2 against their floors on one database."""
    settings = Settings(database_url=url, secret_key="bench-people-secret-key-0123456789")
    engine = create_engine(settings)
    db = Database(engine)

    async def p1() -> list[int]:
        page = await people_page(db)
        return [s.user.id or 0 for s in page.items]

    async def p1_floor() -> list[int]:
        users = [row["id"] for row in await raw.fetch(P1_FLOOR_USERS, PAGE_SIZE + 1)]
        await floor_counts(raw, users[:PAGE_SIZE])
        await raw.fetch("SELECT count(*) AS n FROM users")
        return users[:PAGE_SIZE]

    async def p2() -> list[int]:
        return [s.user.id or 0 for s in await list_users(db, limit=None)]

    async def p2_floor() -> list[int]:
        users = await raw.fetch("SELECT id FROM users ORDER BY username")
        await floor_counts(raw, None)
        return [row["id"] for row in users]

    cases: list[tuple[str, Callable[[], Awaitable[list[int]]], Callable[..., Awaitable[list[int]]]]]
    cases = [
        (f"P1 /users first page ({PAGE_SIZE} users, counts)", p1, p1_floor),
        ("P2 `memory-admin users` (every user, counts)", p2, p2_floor),
    ]
    results = []
    try:
        for label, ours, floor in cases:
            mine, theirs = Side(), Side()
            for n in range(warmup + runs):
                await timed(ours, mine, n >= warmup)
                await timed(floor, theirs, n >= warmup)
            if mine.ids != theirs.ids and mine.error is None and theirs.error is None:
                mine.error = "ours and the floor list different users"
            results.append((f"{label} [{name}]", mine, theirs))
    finally:
        await engine.dispose()
        await raw.close()
    return results


def report(rows: list[tuple[str, Side, Side]]) -> None:
    """A Markdown table: ours median and p95, the floor's median, the ratio."""
    print("| query | median ms | p95 ms | floor median ms | ratio |")
    print("|---|---|---|---|---|")
    for label, mine, floor in rows:
        if mine.error or floor.error:
            print(f"| {label} | {mine.error or ''} | | {floor.error or ''} | |")
            continue
        assert mine.median is not None and mine.p95 is not None and floor.median is not None
        ratio = mine.median / floor.median if floor.median else float("nan")
        print(
            f"| {label} | {mine.median:.1f} | {mine.p95:.1f} | {floor.median:.1f} | {ratio:.2f} |"
        )


async def main() -> None:
    """Parse the options, bench each database given, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sqlite-path", type=Path)
    parser.add_argument("--postgres-url", help="postgresql+asyncpg://... of a loaded database")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    if args.sqlite_path is None and args.postgres_url is None:
        parser.error("give --sqlite-path, --postgres-url or both")
    rows = []
    if args.sqlite_path is not None:
        url = f"sqlite+aiosqlite:///{args.sqlite_path.resolve()}"
        rows += await bench_one("sqlite", url, RawSqlite(args.sqlite_path), args.runs, args.warmup)
    if args.postgres_url is not None:
        raw = await RawPostgres.connect(args.postgres_url.replace("+asyncpg", ""))
        rows += await bench_one("postgresql", args.postgres_url, raw, args.runs, args.warmup)
    report(rows)


if __name__ == "__main__":
    asyncio.run(main())
