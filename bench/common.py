"""What the benchmarks share: the raw-SQL floor's drivers, timing and percentiles, and
the parameters (heavy user, namespace, a ~2% word and tag) chosen from the data.

The bench_*.py scripts import it from this folder (run them as `python bench/bench_X.py`).
"""

from __future__ import annotations

import os
import random
import re
import resource
import sqlite3
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import orjson

SEARCH_LANGUAGE = os.environ.get("SEARCH_LANGUAGE", "english")
"""The text search configuration of the floors' PostgreSQL queries: the app's setting
(webapp/settings.py), read from the same environment the app and memory-admin get."""

REPO = Path(__file__).resolve().parent.parent


GEN = REPO.parent / "shared" / "tools" / "gen_memories.py"


DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


HEAVY_USER = "user-00001"


SAMPLE = 20_000  # rows sampled to pick the word and the tag


TARGET_SHARE = 0.02


Fetch = Callable[[], Awaitable[list[int]]]


class BenchError(Exception):
    """A database could not be prepared; the other one still runs."""


class Raw(Protocol):
    """The floor's connection: SQL with ? placeholders, rows indexable by column name."""

    dialect: str

    def now(self) -> Any: ...

    def stamp(self, moment: datetime) -> Any: ...

    async def fetch(self, sql: str, *params: Any) -> list[Any]: ...

    async def write(self, statements: list[tuple[str, tuple[Any, ...]]]) -> list[int]: ...

    async def close(self) -> None: ...


class RawSqlite:
    """sqlite3 on the file, with the app's pragmas; autocommit, explicit transactions."""

    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        for pragma in (
            "journal_mode=WAL",
            "busy_timeout=10000",
            "foreign_keys=ON",
            "synchronous=NORMAL",
        ):
            self.conn.execute(f"PRAGMA {pragma}")

    def now(self) -> str:
        """The current time as the app stores it in SQLite (UTC text)."""
        return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

    def stamp(self, moment: datetime) -> str:
        """An aware UTC time as the app stores it in SQLite."""
        return moment.strftime("%Y-%m-%d %H:%M:%S.%f")

    async def fetch(self, sql: str, *params: Any) -> list[Any]:
        """Every row of a query."""
        return self.conn.execute(sql, params).fetchall()

    async def write(self, statements: list[tuple[str, tuple[Any, ...]]]) -> list[int]:
        """Run statements in one BEGIN IMMEDIATE transaction; their row counts."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            counts = [self.conn.execute(sql, params).rowcount for sql, params in statements]
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        return counts

    async def close(self) -> None:
        """Close the connection."""
        self.conn.close()


class RawPostgres:
    """One asyncpg connection with the app's server settings (jit off, UTC)."""

    dialect = "postgresql"

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self._sql: dict[str, str] = {}

    @classmethod
    async def connect(cls, dsn: str) -> RawPostgres:
        """Connect to dsn (a plain postgresql:// URL)."""
        conn = await asyncpg.connect(dsn, server_settings={"jit": "off", "timezone": "UTC"})
        return cls(conn)

    def now(self) -> datetime:
        """The current time, aware UTC."""
        return datetime.now(UTC)

    def stamp(self, moment: datetime) -> datetime:
        """An aware UTC time, as asyncpg takes it."""
        return moment

    def _numbered(self, sql: str) -> str:
        if sql not in self._sql:
            numbers = iter(range(1, sql.count("?") + 1))
            self._sql[sql] = re.sub(r"\?", lambda _: f"${next(numbers)}", sql)
        return self._sql[sql]

    async def fetch(self, sql: str, *params: Any) -> list[Any]:
        """Every row of a query (a prepared statement, cached by asyncpg)."""
        return list(await self.conn.fetch(self._numbered(sql), *params))

    async def write(self, statements: list[tuple[str, tuple[Any, ...]]]) -> list[int]:
        """Run statements in one transaction; their row counts."""
        counts = []
        async with self.conn.transaction():
            for sql, params in statements:
                status = await self.conn.execute(self._numbered(sql), *params)
                counts.append(int(status.rsplit(" ", 1)[-1]))
        return counts

    async def close(self) -> None:
        """Close the connection."""
        await self.conn.close()


@dataclass
class Side:
    """The timings of one side (ours or the floor) of a query, or why it failed."""

    times_ms: list[float] = field(default_factory=list)
    ids: list[int] | None = None
    error: str | None = None

    @property
    def median(self) -> float | None:
        """Median of the timed runs, in ms."""
        return statistics.median(self.times_ms) if self.times_ms else None

    @property
    def p95(self) -> float | None:
        """95th percentile (nearest rank) of the timed runs, in ms."""
        if not self.times_ms:
            return None
        ordered = sorted(self.times_ms)
        return ordered[max(0, -(-95 * len(ordered) // 100) - 1)]

    def cells(self) -> list[str]:
        """Median and p95 as a Markdown table shows them, or the error and -."""
        if self.error is not None:
            return ["error: " + self.error.replace("|", "\\|"), "-"]
        return [ms_text(self.median), ms_text(self.p95)]


def ms_text(value: float | None) -> str:
    """A time in ms with two decimals, or - for none."""
    return "-" if value is None else f"{value:.2f}"


def failing(exc: BaseException) -> Fetch:
    """A Fetch that raises exc: the query could not be set up."""

    async def fetch() -> list[int]:
        raise exc

    return fetch


def describe(exc: BaseException) -> str:
    """An error as one short line."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:160]


async def timed(fetch: Fetch, side: Side, record: bool) -> None:
    """Run fetch once; keep its time (if record) and its first ids; note a failure."""
    if side.error is not None:
        return
    start = time.perf_counter()
    try:
        ids = await fetch()
    except Exception as exc:
        side.error = describe(exc)
        return
    elapsed = (time.perf_counter() - start) * 1000
    if side.ids is None:
        side.ids = ids
    if record:
        side.times_ms.append(elapsed)


@dataclass
class Params:
    """What the queries look for, chosen from the data at startup."""

    rows: int
    user_id: int
    namespace: str
    word: str
    word_share: float
    tag: str
    tag_share: float
    get_ids: list[int]
    write_ids: tuple[int, int]  # ours, the floor's


def nearest_share(counts: Counter[str], total: int) -> tuple[str, float]:
    """The key whose share of total is nearest TARGET_SHARE (ties: alphabetical)."""
    if not counts:
        raise BenchError("no candidates in the sample")
    best = min(counts, key=lambda k: (abs(counts[k] / total - TARGET_SHARE), k))
    return best, counts[best] / total


async def choose_params(raw: Raw, needed: int) -> Params:
    """The heaviest user and namespace, a ~2% word and tag, ids to get and to edit."""
    rows = (await raw.fetch("SELECT count(*) AS n FROM long_term_memory"))[0]["n"]
    users = await raw.fetch("SELECT id FROM users WHERE username = ?", HEAVY_USER)
    if not rows or not users:
        raise BenchError(f"the database has no memories or no {HEAVY_USER}; is it imported?")
    user_id = users[0]["id"]
    namespace = (
        await raw.fetch(
            "SELECT namespace, count(*) AS n FROM long_term_memory WHERE user_id = ?"
            " GROUP BY namespace ORDER BY n DESC, namespace LIMIT 1",
            user_id,
        )
    )[0]["namespace"]
    top = (await raw.fetch("SELECT max(id) AS n FROM long_term_memory"))[0]["n"]
    step = max(1, top // SAMPLE)
    wanted = list(range(step, top + 1, step))[:SAMPLE]
    sample: list[Any] = []
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        sample += await raw.fetch(
            'SELECT id, "key", content, tags, is_deleted FROM long_term_memory'
            f" WHERE id IN ({', '.join('?' * len(chunk))})",
            *chunk,
        )
    words: Counter[str] = Counter()
    tags: Counter[str] = Counter()
    for row in sample:
        words.update(set(re.findall(r"[a-z]{4,}", f"{row['key']} {row['content']}".lower())))
        tags.update(set(orjson.loads(row["tags"])))
    word, word_share = nearest_share(words, len(sample))
    tag, tag_share = nearest_share(tags, len(sample))
    live = [row["id"] for row in sample if not row["is_deleted"]]
    if len(live) < 3:
        raise BenchError("too few memories to benchmark")
    rng = random.Random(20261124)
    get_ids = [rng.choice(live[:-2]) for _ in range(needed)]
    return Params(
        rows=rows,
        user_id=user_id,
        namespace=namespace,
        word=word,
        word_share=word_share,
        tag=tag,
        tag_share=tag_share,
        get_ids=get_ids,
        write_ids=(live[-1], live[-2]),
    )


def children_cpu() -> float:
    """CPU seconds used so far by this process's finished, waited-for children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wrk_ms(value: str, unit: str) -> float:
    """A wrk latency (us, ms or s) in ms."""
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk_seconds(out: str, wall: float) -> float:
    """How long wrk says it ran ("N requests in 10.01s"), or the wall time if it does not."""
    took = re.search(r"requests in ([\d.]+)(ms|s|m)\b", out)
    return float(took.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[took.group(2)] if took else wall


def wrk_latency(out: str) -> dict[str, float]:
    """wrk's --latency percentiles (p50, p75, p90, p99), in ms."""
    return {
        f"p{p}": wrk_ms(value, unit)
        for p, value, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)", out, re.M)
    }


def client_latency(times: list[float]) -> dict[str, float]:
    """p50 and p99 of a throughput client's request times in ms (none without requests)."""
    ordered = sorted(times)
    if not ordered:
        return {}
    return {f"p{p}": ordered[min(len(ordered) - 1, len(ordered) * p // 100)] for p in (50, 99)}
