#!/usr/bin/env python3
"""A filter-wide bulk action over ~100,000 of a million rows, through the admin app over
HTTP, while other requests keep coming; against a raw-SQL floor.

For each database (a SQLite file, a PostgreSQL database: reused with --sqlite-path /
--postgres-url, or loaded as bench_http.py loads them; the bench CHANGES the data, so give
it copies) it creates the bench admin and an API token for the heavy user, starts uvicorn
(one worker), picks the tag whose active rows are nearest TARGET (100,000), and, as the
admin in the browser's forms, times:

    preview   GET  /memories/bulk/preview?action=delete&scope=filter&tag=T
    delete    POST /memories/bulk/apply   (the previewed fingerprint; 303)
    undo      POST /memories/bulk/undo    (the flash's signed token; 303)
    add tag   preview + POST apply of add_tag "bench-bulk-<run>"

Meanwhile a background load runs: one client GETting the heavy user's list page (htmx
partial) and one PUTting memories through the API, back to back. Their p95 is reported
before the actions (QUIET_S seconds) and during each, with the count of
failed requests (an exception or a status other than 200/201). The floor is the raw SQL
UPDATE of the same rows in one transaction (no events, no checks), timed on the same
database right after, then undone. Prints Markdown tables. Not a test: the machine is
shared and noisy.

    python bench/bench_bulk.py --sqlite-path COPY.db --postgres-url postgresql+asyncpg://.../COPY
"""

from __future__ import annotations

import argparse
import asyncio
import html
import re
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from bench_api import Token, api_client, create_token, memory_body, revoke_token
from bench_http import create_admin, expect, log_in, new_client
from common import HEAVY_USER, Raw
from harness import free_port, run_main, running_server, server_env

TAG_ADDED = f"bench-bulk-{secrets.token_hex(3)}"
"""A new tag each run, so a reused database's rows never have it already."""
TARGET = 100_000
"""How many rows the action should cover: the tag nearest this many active rows is used."""
QUIET_S = 5.0
"""Seconds of background load before the actions (the `before` phase)."""
FINGERPRINT = re.compile(r'name="fingerprint" value="([^"]+)"')
UNDO_TOKEN = re.compile(r'name="token" value="([^"]+)"')
COUNT = re.compile(r'class="bulk-count"><strong>([\d,]+)</strong>')


@dataclass
class Load:
    """The background requests of one phase: their times and failures."""

    times_ms: list[float] = field(default_factory=list)
    failed: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def p95(self) -> float | None:
        """95th percentile (nearest rank), ms."""
        if not self.times_ms:
            return None
        ordered = sorted(self.times_ms)
        return ordered[max(0, -(-95 * len(ordered) // 100) - 1)]


class Background:
    """A list-page reader and an API writer, running until stopped; a phase at a time."""

    def __init__(self, web: httpx.AsyncClient, api: httpx.AsyncClient, user: str) -> None:
        self.web, self.api, self.user = web, api, user
        self.phase = Load()
        self.running = True
        self.tasks: list[asyncio.Task[None]] = []
        self.run = secrets.token_hex(3)

    async def _one(self, send: Callable[[], Awaitable[httpx.Response]]) -> None:
        start = time.perf_counter()
        try:
            response = await send()
            reason = "" if response.status_code in (200, 201) else str(response.status_code)
        except httpx.HTTPError as exc:
            reason = type(exc).__name__
        phase = self.phase
        phase.times_ms.append((time.perf_counter() - start) * 1000)
        if reason:
            phase.failed += 1
            phase.reasons[reason] += 1

    async def _reader(self) -> None:
        url = "/memories?" + urlencode({"user": self.user, "sort": "-importance"})
        while self.running:
            await self._one(lambda: self.web.get(url, headers={"HX-Request": "true"}))

    async def _writer(self) -> None:
        n = 0
        while self.running:
            n += 1
            body = memory_body(f"bulk-{self.run}-{n % 500}", f"Background write {n}")
            await self._one(lambda body=body: self.api.put("/api/v1/memories", json=body))

    def start(self) -> None:
        """Start both clients."""
        self.tasks = [asyncio.create_task(self._reader()), asyncio.create_task(self._writer())]

    def next_phase(self) -> Load:
        """End the current phase (returned) and start a new one."""
        done, self.phase = self.phase, Load()
        return done

    async def stop(self) -> None:
        """Stop both clients."""
        self.running = False
        await asyncio.gather(*self.tasks)


async def pick_tag(raw: Raw, target: int) -> tuple[str, int]:
    """The tag whose active memories are nearest target in number."""
    if raw.dialect == "sqlite":
        sql = (
            "SELECT t.tag AS tag, count(*) AS n FROM memory_tag t JOIN long_term_memory m"
            " ON m.id = t.memory_id WHERE m.is_deleted = 0"
            " AND (m.expires_at IS NULL OR m.expires_at > ?) GROUP BY t.tag"
        )
    else:
        sql = (
            "SELECT t AS tag, count(*) AS n FROM long_term_memory m,"
            " jsonb_array_elements_text(m.tags) t WHERE NOT m.is_deleted"
            " AND (m.expires_at IS NULL OR m.expires_at > ?) GROUP BY t"
        )
    rows = await raw.fetch(sql, raw.now())
    best = min(rows, key=lambda row: (abs(row["n"] - target), row["tag"]))
    return best["tag"], best["n"]


async def timed(send: Callable[[], Awaitable[httpx.Response]]) -> tuple[httpx.Response, float]:
    """The response and its time in seconds."""
    start = time.perf_counter()
    response = await send()
    return response, time.perf_counter() - start


async def preview(client: httpx.AsyncClient, action: str, tag: str, value: str = "") -> Any:
    """GET the preview of action over every active memory tagged tag."""
    query = {"action": action, "scope": "filter", "tag": tag, "value": value}
    response, took = await timed(lambda: client.get("/memories/bulk/preview?" + urlencode(query)))
    expect(response, 200)
    fingerprint = FINGERPRINT.search(response.text)
    count = COUNT.search(response.text)
    if fingerprint is None or count is None:
        raise RuntimeError("the preview shows no count or no fingerprint")
    return int(count.group(1).replace(",", "")), html.unescape(fingerprint.group(1)), took


async def confirm(
    client: httpx.AsyncClient, csrf: str, action: str, tag: str, fingerprint: str, value: str = ""
) -> float:
    """POST the confirm form of a previewed action; its time in seconds."""
    data = {
        "csrf_token": csrf,
        "action": action,
        "scope": "filter",
        "value": value,
        "fingerprint": fingerprint,
        "next": "/memories",
    }
    url = "/memories/bulk/apply?" + urlencode({"tag": tag})
    response, took = await timed(lambda: client.post(url, data=data))
    expect(response, 303)
    return took


async def floor(raw: Raw, tag: str) -> float:
    """The raw UPDATE of the same rows in one transaction (then put back); seconds."""
    if raw.dialect == "sqlite":
        where = (
            "id IN (SELECT memory_id FROM memory_tag WHERE tag = ?) AND is_deleted = 0"
            " AND (expires_at IS NULL OR expires_at > ?)"
        )
        gone, back = "is_deleted = 1, deleted_at = ?", "is_deleted = 0, deleted_at = NULL"
    else:
        where = (
            "tags @> jsonb_build_array(?::text) AND NOT is_deleted"
            " AND (expires_at IS NULL OR expires_at > ?)"
        )
        gone, back = "is_deleted = true, deleted_at = ?", "is_deleted = false, deleted_at = NULL"
    now = raw.now()
    sql = f"UPDATE long_term_memory SET {gone}, version = version + 1, updated_at = ? WHERE {where}"
    start = time.perf_counter()
    await raw.write([(sql, (now, now, tag, now))])
    took = time.perf_counter() - start
    await raw.write([(f"UPDATE long_term_memory SET {back} WHERE deleted_at = ?", (now,))])
    return took


async def run_bulk(
    name: str, raw: Raw, base_url: str, token: Token, args: argparse.Namespace
) -> dict[str, Any]:
    """Everything for one database, in one event loop."""
    tag, expected = await pick_tag(raw, args.target)
    print(f"{name}: tag {tag!r}, {expected:,} active rows", flush=True)
    results: dict[str, Any] = {"database": name, "tag": tag, "rows": expected, "phases": {}}
    async with (
        new_client(base_url) as admin,
        new_client(base_url) as reader,
        api_client(base_url, token) as writer,
    ):
        admin.timeout = httpx.Timeout(600.0)
        csrf = await log_in(admin)
        await log_in(reader)
        load = Background(reader, writer, HEAVY_USER)
        load.start()
        await asyncio.sleep(args.quiet)
        results["phases"]["before"] = load.next_phase()

        count, fingerprint, took = await preview(admin, "delete", tag)
        results["phases"]["preview"] = load.next_phase()
        results["preview_s"], results["count"] = took, count

        results["delete_s"] = await confirm(admin, csrf, "delete", tag, fingerprint)
        results["phases"]["delete"] = load.next_phase()

        page = expect(await admin.get("/memories"), 200).text
        undo = UNDO_TOKEN.search(page)
        if undo is None:
            raise RuntimeError("no Undo after the bulk delete")
        data = {"csrf_token": csrf, "token": html.unescape(undo.group(1)), "next": "/memories"}
        response, results["undo_s"] = await timed(
            lambda: admin.post("/memories/bulk/undo", data=data)
        )
        expect(response, 303)
        results["phases"]["undo"] = load.next_phase()

        count2, fingerprint, took = await preview(admin, "add_tag", tag, TAG_ADDED)
        results["add_tag_preview_s"] = took
        results["add_tag_s"] = await confirm(admin, csrf, "add_tag", tag, fingerprint, TAG_ADDED)
        results["phases"]["add tag"] = load.next_phase()
        await load.stop()
    results["floor_s"] = await floor(raw, tag)
    await raw.close()
    results["phases"] = {
        phase: {
            "p95_ms": each.p95(),
            "max_ms": max(each.times_ms, default=None),
            "requests": len(each.times_ms),
            "failed": each.failed,
            "reasons": dict(each.reasons),
        }
        for phase, each in results["phases"].items()
    }
    return results


def bench_database(
    name: str,
    url: str,
    raw_factory: Callable[[], Awaitable[Raw]],
    args: argparse.Namespace,
    log_dir: Path,
) -> dict[str, Any]:
    """Admin, token, server; then the actions under load."""
    secret = secrets.token_urlsafe(32)
    env = server_env(url, secret)
    create_admin(env)
    token = create_token(env)
    try:
        with running_server(url, secret, args.port or free_port(), log_dir) as server:

            async def go() -> dict[str, Any]:
                return await run_bulk(name, await raw_factory(), server.base_url, token, args)

            result = asyncio.run(go())
            result["server_errors"] = len(server.log_problems())
    finally:
        revoke_token(env, token)
    return result


def _s(value: float) -> str:
    return f"{value:.1f} s"


def print_report(results: list[dict[str, Any]]) -> None:
    """The Markdown tables."""
    print(
        "\n| database | rows | preview | delete | undo | add tag | floor (raw UPDATE)"
        " | delete / floor |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['database']} | {r['count']:,} | {_s(r['preview_s'])} | {_s(r['delete_s'])} "
            f"| {_s(r['undo_s'])} | {_s(r['add_tag_s'])} | {_s(r['floor_s'])} "
            f"| {r['delete_s'] / r['floor_s']:.1f}x |"
        )
    print("\n| database | phase | other requests | p95 | max | failed |")
    print("|---|---|---:|---:|---:|---:|")
    for r in results:
        for phase, each in r["phases"].items():
            p95, top = (
                f"{each[name]:.0f} ms" if each[name] is not None else "-"
                for name in ("p95_ms", "max_ms")
            )
            failed = f"{each['failed']} {each['reasons'] or ''}".strip()
            print(f"| {r['database']} | {phase} | {each['requests']} | {p95} | {top} | {failed} |")


def main() -> None:
    """Bulk actions over ~100k rows under load."""

    def bench(name: str, url: str, raw: Any, args: argparse.Namespace, log: Path) -> dict:
        args.target, args.quiet = TARGET, QUIET_S
        return bench_database(name, url, raw, args, log)

    run_main(__doc__, "bulk", bench, print_report, lambda args: {"target": TARGET})


if __name__ == "__main__":
    main()
