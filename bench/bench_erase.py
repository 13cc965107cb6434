"""Erasing the heaviest user of a loaded database, against a raw-SQL floor in the same run.

The floor deletes the second-heaviest user's rows by hand with the raw driver (the same
DELETEs, no preview, no scrubbing, no audit record; on SQLite the same set-wise full-text
and tag index upkeep as the erasure's); on SQLite it then runs the FTS5 'optimize'
alone, the index rewrite the erasure needs so that no erased word stays in the index.
Then `erase_user` erases the heaviest user. Destructive: point it at copies.

    createdb -h 127.0.0.1 -U postgres -T bench1m bench_erase
    cp /work/bench-data/m1m.db /tmp/erase.db
    .venv/bin/python bench/bench_erase.py --sqlite-path /tmp/erase.db \\
        --postgres-url postgresql+asyncpg://postgres@127.0.0.1:5432/bench_erase
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import time
from contextlib import closing

import asyncpg
from sqlalchemy.engine import make_url

from webapp import migrate
from webapp.db import Database, create_engine
from webapp.services.erase import SQLITE_UNINDEX, erase_user
from webapp.services.fulltext import FTS_TABLE
from webapp.services.principal import Principal
from webapp.settings import Settings

SECRET = "bench-secret-key-0123456789abcdef0123456789"
HEAVIEST = (
    "SELECT u.username, u.id, count(*) AS n FROM long_term_memory m JOIN users u "
    "ON u.id = m.user_id GROUP BY u.username, u.id ORDER BY n DESC LIMIT 2"
)
FLOOR = (
    "DELETE FROM memory_event WHERE user_id = {p}",
    "DELETE FROM long_term_memory WHERE user_id = {p}",
    "DELETE FROM api_token WHERE user_id = {p}",
    "DELETE FROM web_session WHERE user_id = {p}",
    "DELETE FROM users WHERE id = {p}",
)


def heaviest_sqlite(path: str) -> str:
    """The username with the most memories."""
    with closing(sqlite3.connect(path)) as conn:
        return str(conn.execute(HEAVIEST).fetchone()[0])


def sqlite_floor(path: str) -> tuple[list[tuple[str, int, int]], float, float]:
    """The two heaviest users; the time to delete the second by hand, then to optimize."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA foreign_keys=ON")
        users = conn.execute(HEAVIEST).fetchall()
        start = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        for statement in FLOOR[:1]:
            conn.execute(statement.format(p="?"), (users[1][1],))
        for unindex in SQLITE_UNINDEX:  # the rows themselves, as the erasure removes them
            conn.execute(unindex.text, {"user_id": users[1][1]})
        for statement in FLOOR[2:]:
            conn.execute(statement.format(p="?"), (users[1][1],))
        conn.execute("COMMIT")
        deleted = time.perf_counter() - start
        start = time.perf_counter()
        conn.execute(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('optimize')")
        optimized = time.perf_counter() - start
    return users, deleted, optimized


async def postgres_floor(
    url: str, *, delete: bool = True
) -> tuple[list[tuple[str, int, int]], float, float]:
    """The two heaviest users; the time to delete the second by hand (no optimize step)."""
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        users = [tuple(row) for row in await conn.fetch(HEAVIEST)]
        if not delete:
            return users, 0.0, 0.0  # type: ignore[return-value]
        start = time.perf_counter()
        async with conn.transaction():
            for statement in FLOOR:
                await conn.execute(statement.format(p="$1"), users[1][1])
        deleted = time.perf_counter() - start
    finally:
        await conn.close()
    return users, deleted, 0.0  # type: ignore[return-value]


async def app_erase(url: str, username: str) -> tuple[float, int]:
    """Migrate (0007 adds admin_event), then time erase_user; returns seconds and memories."""
    engine = create_engine(Settings(database_url=url, secret_key=SECRET))
    try:
        await migrate.upgrade(engine)
        db = Database(engine)
        start = time.perf_counter()
        erased = await erase_user(
            db, principal=Principal.operator("bench"), username=username, confirm_username=username
        )
        return time.perf_counter() - start, erased.counts.memories
    finally:
        await engine.dispose()


async def run(args: argparse.Namespace) -> None:
    """Print one Markdown row per database."""
    print(
        "| database | floor: raw DELETEs (2nd heaviest, rows) | floor: FTS optimize "
        "| erase_user (heaviest, rows) | erase / floor |"
    )
    print("|---|---:|---:|---:|---:|")
    if args.sqlite_path:
        url = f"sqlite+aiosqlite:///{args.sqlite_path}"
        if args.app_first:  # the first to run reads the file cold
            seconds, rows = await app_erase(url, heaviest_sqlite(args.sqlite_path))
        users, deleted, optimized = sqlite_floor(args.sqlite_path)
        if not args.app_first:
            seconds, rows = await app_erase(url, users[0][0])
        floor = deleted + optimized
        print(
            f"| SQLite | {deleted * 1000:,.0f} ms ({users[1][2]:,}) | {optimized:,.1f} s "
            f"| {seconds:,.1f} s ({rows:,}) | {seconds / floor:.2f} |"
        )
    if args.postgres_url:
        if args.app_first:
            users, _, _ = await postgres_floor(args.postgres_url, delete=False)
            seconds, rows = await app_erase(args.postgres_url, users[0][0])
        users, deleted, _ = await postgres_floor(args.postgres_url)
        if not args.app_first:
            seconds, rows = await app_erase(args.postgres_url, users[0][0])
        print(
            f"| PostgreSQL | {deleted * 1000:,.0f} ms ({users[1][2]:,}) | - "
            f"| {seconds * 1000:,.0f} ms ({rows:,}) | {seconds / deleted:.2f} |"
        )


def main() -> None:
    """Parse the command line and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sqlite-path", help="a loaded SQLite database to erase users of")
    parser.add_argument("--postgres-url", help="a loaded PostgreSQL database (asyncpg URL)")
    parser.add_argument(
        "--app-first", action="store_true", help="erase before the floor (which then runs warm)"
    )
    args = parser.parse_args()
    if not (args.sqlite_path or args.postgres_url):
        parser.error("give --sqlite-path, --postgres-url or both")
    asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
