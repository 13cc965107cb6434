#!/usr/bin/env python3
"""Mixed traffic on a loaded database for a minute: requests/s, p50 / p99, errors, and
the server's memory over the run.

`memory-admin serve --workers N` (1, then 2) on a reused database (--sqlite-path,
--postgres-url: the million rows, say), and --clients keep-alive clients that each pick,
request after request, 80% reads and 20% writes:

    reads   the dashboard, the memory list (a user, a text search, a tag), a detail page,
            the users page, the namespaces page, and the API's list, one memory, recall
            and search, as the heaviest user (the API) or an admin (the pages)
    writes  the API's upsert of a new key and of an existing one, and the importance form

RSS is the sum over the server's processes (uvicorn and its workers), sampled each
second: the peak, after the warm-up (--warmup seconds), and at the end, which must be
within 10% of it. Any answer other than 2xx/3xx is an error. Not a test: the numbers move
with the machine's load.

    python bench/bench_load.py --sqlite-path m1m.db --postgres-url postgresql://.../bench1m
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil
from harness import memory_admin

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' server helper

from tests.serve_support import Server, serving
from tests.web_support import Visitor

SECRET = "bench-load-secret-key-0123456789abcdef"
ADMIN, PASSWORD = "bench-load-admin", "bench-load-password"
HEAVY = "user-00001"
WORDS = ["coffee", "night", "meeting", "python", "garden", "music", "travel", "budget"]


def prepare(url: str) -> str:
    """The bench admin (made once) and a new token of the heavy user; the token."""
    env = {**os.environ, "DATABASE_URL": url, "SECRET_KEY": SECRET}
    created = subprocess.run(
        [sys.executable, "-m", "webapp.cli", "createuser", ADMIN, "--admin", "--password-stdin"],
        input=PASSWORD + "\n",
        env=env,
        capture_output=True,
        text=True,
    )
    if created.returncode != 0 and "exists" not in created.stderr:
        raise SystemExit(created.stderr)
    return memory_admin(env, "token", "create", HEAVY, "--name", f"load-{time.time_ns()}").split()[
        -1
    ]


class Load:
    def __init__(self) -> None:
        self.times: list[float] = []
        self.errors: Counter[str] = Counter()
        self.by_kind: dict[str, list[float]] = {}

    async def timed(
        self, kind: str, request: asyncio.Future[httpx.Response] | object
    ) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            response: httpx.Response = await request  # type: ignore[misc]
        except httpx.HTTPError as exc:
            self.errors[f"{kind}: {type(exc).__name__}"] += 1
            return None
        self.times.append(time.perf_counter() - started)
        self.by_kind.setdefault(kind, []).append(self.times[-1])
        if response.status_code >= 400:
            self.errors[f"{kind}: {response.status_code}"] += 1
        return response


async def client_loop(
    number: int, server: Server, token: str, ids: list[int], stop: float, load: Load
) -> None:
    chance = random.Random(number)
    api = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=2)
    async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as client:
        visitor = Visitor(client)
        assert (await visitor.log_in(ADMIN, PASSWORD)).status_code == 303
        sent = 0
        while time.monotonic() < stop:
            sent += 1
            memory_id, word = chance.choice(ids), chance.choice(WORDS)
            roll = chance.random()
            if roll < 0.80:
                page, call = _read(chance.randrange(10), word, memory_id)
                if page:
                    await load.timed(f"page {call[0]}", visitor.get(call[1]))
                else:
                    label, method, url, body = call
                    request = client.request(method, url, json=body, headers=api)
                    await load.timed(f"api {label}", request)
            elif roll < 0.90:
                body = {
                    "namespace": "bench/load",
                    "key": f"c{number}-{sent}",
                    "content": f"load {word} {sent}",
                }
                await load.timed(
                    "api upsert", client.put("/api/v1/memories", json=body, headers=api)
                )
            elif roll < 0.95:
                body = {
                    "namespace": "bench/load",
                    "key": f"c{number}-1",
                    "content": f"again {sent}",
                }
                await load.timed(
                    "api update", client.put("/api/v1/memories", json=body, headers=api)
                )
            else:
                form = {"importance": f"{chance.random():.2f}"}
                await load.timed(
                    "form importance", visitor.post(f"/memories/{memory_id}/importance", form)
                )


def _read(which: int, word: str, memory_id: int) -> tuple[bool, tuple]:
    """The which-th kind of read: (is a page, (label, url) or (label, method, url, ...))."""
    pages = [
        ("/", "/"),
        ("list", f"/memories?user={HEAVY}"),
        ("search", f"/memories?user={HEAVY}&q={word}"),
        ("tag", f"/memories?user={HEAVY}&tag=work"),
        ("detail", f"/memories/{memory_id}"),
        ("users", "/users"),
        ("namespaces", f"/namespaces?user={HEAVY}"),
    ]
    if which < len(pages):
        return True, pages[which]
    api: list[tuple] = [
        ("list", "GET", "/api/v1/memories?limit=20", None),
        ("get", "GET", f"/api/v1/memories/{memory_id}", None),
        ("search", "POST", "/api/v1/search", {"query": word}),
    ]
    return False, api[which - len(pages)]


def rss(server: Server) -> int:
    """Resident memory of the server's processes, in bytes."""
    process = psutil.Process(server.process.pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])


async def run(
    server: Server, token: str, ids: list[int], args: argparse.Namespace
) -> dict[str, float]:
    load = Load()
    samples: list[tuple[float, int]] = []
    started = time.monotonic()
    stop = started + args.duration

    async def sample() -> None:
        while time.monotonic() < stop:
            samples.append((time.monotonic() - started, rss(server)))
            await asyncio.sleep(1)

    await asyncio.gather(
        sample(), *(client_loop(n, server, token, ids, stop, load) for n in range(args.clients))
    )
    took = time.monotonic() - started
    warm = next(value for at, value in samples if at >= args.warmup)
    times = sorted(load.times)
    return {
        "requests": len(times),
        "per_second": len(times) / took,
        "p50_ms": statistics.median(times) * 1000,
        "p99_ms": times[int(len(times) * 0.99)] * 1000,
        "errors": sum(load.errors.values()),
        "error_kinds": dict(load.errors),  # type: ignore[dict-item]
        "by_kind": {  # type: ignore[dict-item]
            kind: (len(t), statistics.median(t) * 1000, sorted(t)[int(len(t) * 0.99)] * 1000)
            for kind, t in sorted(load.by_kind.items())
        },
        "rss_peak_mb": max(v for _, v in samples) / 1e6,
        "rss_warm_mb": warm / 1e6,
        "rss_end_mb": samples[-1][1] / 1e6,
    }


async def memory_ids(url: str) -> list[int]:
    from sqlalchemy import select

    from webapp.db import create_engine, create_sessionmaker
    from webapp.models import LongTermMemory, User
    from webapp.settings import Settings

    engine = create_engine(Settings(database_url=url, secret_key=SECRET))
    try:
        async with create_sessionmaker(engine)() as session:
            owner = select(User.id).where(User.username == HEAVY).scalar_subquery()  # type: ignore[arg-type]
            query = (
                select(LongTermMemory.id)
                .where(LongTermMemory.user_id == owner, LongTermMemory.is_deleted.is_(False))
                .limit(2000)
            )  # type: ignore[arg-type,union-attr,attr-defined]
            return list((await session.execute(query)).scalars())
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sqlite-path", type=Path)
    parser.add_argument("--postgres-url")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    targets = []
    if args.sqlite_path:
        targets.append(("sqlite", f"sqlite+aiosqlite:///{args.sqlite_path.resolve()}"))
    if args.postgres_url:
        targets.append(
            ("postgresql", args.postgres_url.replace("postgresql://", "postgresql+asyncpg://", 1))
        )
    print(
        "| database | workers | requests | req/s | p50 ms | p99 ms | errors "
        "| RSS peak MB | after warm-up | end | end / warm |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    failed = False
    for name, url in targets:
        token = prepare(url)
        ids = asyncio.run(memory_ids(url))
        for workers in args.workers:
            logs = Path(tempfile.mkdtemp(prefix="ma-bench-load-"))
            with serving(url, SECRET, logs, workers=workers) as server:
                r = asyncio.run(run(server, token, ids, args))
            ratio = r["rss_end_mb"] / r["rss_warm_mb"]
            failed |= bool(r["errors"]) or ratio > 1.10
            print(
                f"| {name} | {workers} | {r['requests']:,.0f} | {r['per_second']:.0f} "
                f"| {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']:.0f} "
                f"| {r['rss_peak_mb']:.0f} | {r['rss_warm_mb']:.0f} | {r['rss_end_mb']:.0f} "
                f"| {ratio:.2f} |",
                flush=True,
            )
            if r["errors"]:
                print(f"  errors: {r['error_kinds']}; the server's log: {logs / 'serve.log'}")
            kinds = r["by_kind"].items()  # type: ignore[attr-defined]
            print("  " + "; ".join(f"{k} {n} x {p50:.0f}/{p99:.0f}" for k, (n, p50, p99) in kinds))
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
