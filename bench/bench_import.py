#!/usr/bin/env python3
"""Import speed and peak memory of `memory-admin import`, against a plain bulk-load floor.

For each database (SQLite file, PostgreSQL database created for the run) it:
1. loads the file with no validation, no events and no upsert logic (the floor: orjson
   + executemany on SQLite, orjson + COPY on PostgreSQL, single process, every index of
   the migrated schema in place), and
2. runs `memory-admin import FILE` as a user would, in a fresh migrated database,
   sampling the RSS of the whole process tree (the command and its parse worker) every
   50 ms for the peak.
It prints rows/s for both, their ratio, and the peaks. Not a test: numbers vary with
the machine's load; run it on a quiet machine and read the ratio.

    python bench/bench_import.py --rows 1000000              # generates the data set
    python bench/bench_import.py --file memories.jsonl --db sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import psutil
from common import DEFAULT_PG, GEN
from harness import memory_admin_command, pg_admin

COLUMNS = (
    "user_id namespace key content tags importance access_count last_accessed_at "
    "expires_at is_deleted deleted_at created_at updated_at"
).split()


def memory_admin(env: dict[str, str], *args: str, **kwargs: object) -> subprocess.Popen[bytes]:
    """Start the installed memory-admin command (the venv's, beside this Python)."""
    return subprocess.Popen([*memory_admin_command(), *args], env=env, **kwargs)  # type: ignore[call-overload]


def run_migrate(env: dict[str, str]) -> None:
    proc = memory_admin(env, "migrate", stdout=subprocess.DEVNULL)
    if proc.wait() != 0:
        raise SystemExit("migrate failed")


def timed_import(env: dict[str, str], path: Path) -> tuple[float, int, str]:
    """Seconds, peak RSS of the process tree (bytes), and the command's summary line."""
    start = time.perf_counter()
    proc = memory_admin(env, "import", str(path), stdout=subprocess.PIPE)
    peak = 0
    parts = [0, 0]  # the command, its parse worker
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                sizes = [p.memory_info().rss for p in tree]
                peak = max(peak, sum(sizes))
                parts[0] = max(parts[0], sizes[0])
                parts[1] = max(parts[1], sum(sizes[1:]))
            except psutil.Error:
                pass
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"import failed with exit code {proc.returncode}")
    summary = out.decode().strip()
    summary += f" [peak RSS: command {parts[0] / 1e6:.0f} MB, worker {parts[1] / 1e6:.0f} MB]"
    return seconds, peak, summary


def _iso(value: str | None) -> str | None:
    if value is None:
        return None
    return value.replace("T", " ").replace("Z", ".000000")


def floor_row(
    r: dict[str, Any], uid: object, time_value: Callable[[Any], Any], flag: Callable[[Any], Any]
) -> tuple[object, ...]:
    """One parsed line as the floor inserts it, in COLUMNS order, with the driver's types."""
    return (
        uid,
        r["namespace"],
        r["key"],
        r["content"],
        orjson.dumps(r["tags"]).decode(),
        r["importance"],
        r["access_count"],
        time_value(r["last_accessed_at"]),
        time_value(r["expires_at"]),
        flag(r["is_deleted"]),
        time_value(r["deleted_at"]),
        time_value(r["created_at"]),
        time_value(r["updated_at"]),
    )


def floor_sqlite(db_path: Path, data: Path) -> float:
    """Plain load: parse, executemany in batches, one transaction, same schema and indexes."""
    import sqlite3

    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA cache_size=-65536")  # the same page cache as the import, for fairness
    users: dict[str, int] = {}
    sql = (
        f"INSERT INTO long_term_memory ({', '.join(COLUMNS)}, version) "
        f"VALUES ({', '.join('?' * len(COLUMNS))}, 1)"
    )
    start = time.perf_counter()
    conn.execute("BEGIN")
    batch: list[tuple[object, ...]] = []
    with data.open("rb") as handle:
        for line in handle:
            r = orjson.loads(line)
            uid = users.get(r["user"])
            if uid is None:
                cur = conn.execute(
                    "INSERT INTO users (username, password_hash, is_admin, is_active, created_at)"
                    " VALUES (?, '!', 0, 1, '2026-01-01 00:00:00.000000')",
                    (r["user"],),
                )
                uid = users[r["user"]] = cur.lastrowid  # type: ignore[assignment]
            batch.append(floor_row(r, uid, _iso, int))
            if len(batch) == 5000:
                conn.executemany(sql, batch)
                batch.clear()
    if batch:
        conn.executemany(sql, batch)
    conn.execute("COMMIT")
    seconds = time.perf_counter() - start
    conn.close()
    return seconds


async def floor_postgres(dsn: str, data: Path) -> float:
    """Plain load: parse, COPY in batches, one transaction, same schema and indexes."""
    from datetime import datetime

    def ts(value: str | None) -> datetime | None:
        return None if value is None else datetime.fromisoformat(value)

    conn = await asyncpg.connect(dsn)
    users: dict[str, int] = {}
    start = time.perf_counter()
    async with conn.transaction():
        batch: list[tuple[object, ...]] = []
        with data.open("rb") as handle:
            for line in handle:
                r = orjson.loads(line)
                uid = users.get(r["user"])
                if uid is None:
                    uid = users[r["user"]] = await conn.fetchval(
                        "INSERT INTO users (username, password_hash, is_admin, is_active,"
                        " created_at) VALUES ($1, '!', false, true, now()) RETURNING id",
                        r["user"],
                    )
                batch.append(floor_row(r, uid, ts, bool))
                if len(batch) == 5000:
                    await conn.copy_records_to_table(
                        "long_term_memory",
                        records=[(*b, 1) for b in batch],
                        columns=[*COLUMNS, "version"],
                    )
                    batch.clear()
        if batch:
            await conn.copy_records_to_table(
                "long_term_memory",
                records=[(*b, 1) for b in batch],
                columns=[*COLUMNS, "version"],
            )
    seconds = time.perf_counter() - start
    await conn.close()
    return seconds


def seed_one_row(env: dict[str, str], workdir: Path) -> None:
    """Import one memory first, so the timed import keeps every index up to date row by row
    (into an empty table it drops the secondary indexes and builds them at the end)."""
    seed = workdir / "seed.jsonl"
    seed.write_text(
        '{"user": "seed", "namespace": "seed", "key": "seed", "content": "one row first"}\n'
    )
    if memory_admin(env, "import", str(seed), stdout=subprocess.DEVNULL).wait() != 0:
        raise SystemExit("seeding the database failed")


def bench_sqlite(data: Path, rows: int, workdir: Path, non_empty: bool) -> dict[str, object]:
    results: dict[str, object] = {"db": "sqlite"}
    for label in ("floor", "import"):
        db = workdir / f"{label}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{db}", "SECRET_KEY": "bench"}
        run_migrate(env)
        if label == "floor":
            results["floor_s"] = floor_sqlite(db, data)
        else:
            if non_empty:
                seed_one_row(env, workdir)
            seconds, peak, summary = timed_import(env, data)
            results.update(import_s=seconds, peak=peak, summary=summary)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    return results


def bench_postgres(
    data: Path, rows: int, admin_url: str, workdir: Path, non_empty: bool
) -> dict[str, object]:
    results: dict[str, object] = {"db": "postgresql"}
    for label in ("floor", "import"):
        name = f"ma_bench_{label}_{uuid.uuid4().hex[:8]}"
        asyncio.run(pg_admin(admin_url, f'CREATE DATABASE "{name}"'))
        url = admin_url.rsplit("/", 1)[0] + "/" + name
        env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": "bench"}
        try:
            run_migrate(env)
            if label == "floor":
                results["floor_s"] = asyncio.run(floor_postgres(url.replace("+asyncpg", ""), data))
            else:
                if non_empty:
                    seed_one_row(env, workdir)
                seconds, peak, summary = timed_import(env, data)
                results.update(import_s=seconds, peak=peak, summary=summary)
        finally:
            asyncio.run(pg_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", type=Path, help="JSON Lines to import (default: generate)")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows to generate")
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--non-empty",
        action="store_true",
        help="import into a table that already has a row (indexes maintained row by row)",
    )
    parser.add_argument("--postgres-url", default=os.environ.get("TEST_POSTGRES_URL", DEFAULT_PG))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ma-bench-") as tmp:
        workdir = Path(tmp)
        data = args.file
        if data is None:
            data = workdir / "memories.jsonl"
            print(f"generating {args.rows} rows with {GEN.name} ...", flush=True)
            with data.open("wb") as out:
                subprocess.run(
                    [sys.executable, str(GEN), "--memories", str(args.rows)], stdout=out, check=True
                )
        with data.open("rb") as handle:
            rows = sum(1 for _ in handle)
        print(f"data: {data} ({rows} rows, {data.stat().st_size / 1e6:.0f} MB)", flush=True)
        results = []
        if args.db in ("sqlite", "both"):
            results.append(bench_sqlite(data, rows, workdir, args.non_empty))
        if args.db in ("postgresql", "both"):
            results.append(bench_postgres(data, rows, args.postgres_url, workdir, args.non_empty))

    print()
    print("| database | floor rows/s | import rows/s | import / floor | peak RSS (MB) |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        floor_rate = rows / float(r["floor_s"])  # type: ignore[arg-type]
        import_rate = rows / float(r["import_s"])  # type: ignore[arg-type]
        print(
            f"| {r['db']} | {floor_rate:,.0f} | {import_rate:,.0f} | "
            f"{import_rate / floor_rate:.2f} | {int(r['peak']) / 1e6:.0f} |"  # type: ignore[call-overload]
        )
    for r in results:
        print(f"{r['db']}: {r['summary']}")


if __name__ == "__main__":
    main()
