#!/usr/bin/env python3
"""Latency and throughput of the admin app over HTTP, through uvicorn, against a raw-SQL floor.

For each database (a SQLite file, a PostgreSQL database; loaded as bench_queries.py loads
them, or reused with --sqlite-path / --postgres-url) it creates an admin user, starts
`uvicorn webapp.main:create_app --factory --workers 1` as a subprocess, logs in over HTTP
like a browser (login CSRF cookie, then the session cookie) and times, with httpx and
keep-alive, the pages that serve bench_queries.py's queries with the same parameters:

    Q1 /memories                            full page and htmx partial (HX-Request)
    Q2 /memories?user=U&sort=-importance    full page and partial
    Q3 /memories?user=U&namespace=NS        full page and partial
    Q4 /memories?q=WORD                     full page and partial
    Q5 /memories?tag=TAG                    full page and partial
    Q6 page 200 of Q1 (rel="next" x 199)    full page and partial
    Q7 /trash?user=U                        full page and partial
    F1 /memories?sort=created_at            full page and partial
    F2 /memories?sort=-access_count         full page and partial
    F3 /memories?sort=-last_accessed_at     full page and partial
    F4 /memories?min_importance=0.9         full page and partial
    F5 /memories?expiring_within=7          full page and partial
    F6 /memories?namespace=PREFIX/          full page and partial (PREFIX: NS's first part)
    Q8 /memories/ID                         the detail page
    D1 /                                    the dashboard (full page; no target)
    U1 /users                               the users list with counts (full page; no target)
    W1 POST /memories/ID/importance         a plain form post (303) and an htmx post (200)

Each request is set against bench_queries.py's raw-SQL floor for the same rows (sqlite3 or
asyncpg in this process), timed alternately in the same run; the rows a page shows (for
D1 its counts and memory links, for U1 each user's counts) are checked against the
floor's. Then it measures throughput: Q2's partial from 4 concurrent keep-alive clients
for 10 s (wrk when installed, and async httpx), with the CPU used by the server and by
the client. It prints a Markdown table per database with PASS/FAIL against the targets
(none for D1 and U1), never failing the exit status for a miss. Not a test: numbers vary
with the machine's load.

    python bench/bench_http.py --rows 20000 --runs 10                # quick try
    python bench/bench_http.py --file /tmp/m1m.jsonl --keep --json   # 1M rows, kept
    python bench/bench_http.py --sqlite-path PATH --postgres-url URL # reuse loaded databases
"""

from __future__ import annotations

import argparse
import asyncio
import html
import itertools
import os
import re
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from bench_queries import (
    DEPTH,
    DEPTH_RATIO,
    EXPIRING_WITHIN_DAYS,
    MIN_IMPORTANCE,
    PAGE,
    Case,
    alternating,
    namespace_prefix,
)
from bench_queries import Bench as ServiceBench
from common import (
    HEAVY_USER,
    BenchError,
    Fetch,
    Params,
    Raw,
    Side,
    children_cpu,
    choose_params,
    client_latency,
    timed,
    wrk_latency,
    wrk_seconds,
)
from harness import (
    Server,
    free_port,
    memory_admin_command,
    run_main,
    running_server,
    server_env,
)

from webapp.db import Database, create_engine
from webapp.settings import Settings

ADMIN = "benchadmin"
PASSWORD = "bench-http-password"  # a throwaway database's admin; reused runs log in with it
LIST_P95_MS = 30.0
ONE_P95_MS = 10.0
THROUGHPUT_RPS = 250.0
# The p95 on SQLite, 1M rows, for the best of SQLAdmin / starlette-admin / Django
# admin per query (ms), and their best Q2 throughput.
OTHERS_P95_MS = {"Q1": 865, "Q2": 161, "Q4": 494, "Q5": 1100, "Q6": 3200, "Q8": 11, "W1": 18}
OTHERS_RPS = 7
HX = {"HX-Request": "true"}
IDS = re.compile(r'data-memory-id="(\d+)"|<tr id="trash-(\d+)"')
STAT_VALUE = re.compile(r'<span class="stat-value">([\d,]+)</span>')
MEMORY_LINK = re.compile(r'<li>\s*<a href="/memories/(\d+)">')
USER_COUNTS = re.compile(
    r'<td class="num">(?:<a [^>]*>)?([\d,]+)(?:</a>)?</td>\s*'
    r'<td class="num">(?:<a [^>]*>)?([\d,]+)(?:</a>)?</td>\s*'
    r'<td class="num">(?:<a [^>]*>)?([\d,]+)(?:</a>)?</td>'
)
NEXT = re.compile(r'<a rel="next" href="([^"]+)"')
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
SESSION_CSRF = re.compile(r"hx-headers='\{\"X-CSRF-Token\": \"([^\"]+)\"\}'")
IMPORTANCE_FORM = re.compile(
    r'<form class="importance-form".*?name="version" value="(\d+)".*?name="importance"'
    r'[^>]*?value="([0-9.]+)"',
    re.S,
)
WRK_LUA = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok = 0; other = 0 end
function response(status, headers, body)
  if status == 200 then ok = ok + 1 else other = other + 1 end
end
function done(summary, latency, requests)
  local o, x = 0, 0
  for _, t in ipairs(threads) do o = o + t:get("ok"); x = x + t:get("other") end
  io.write(string.format("BENCH ok=%d other=%d\\n", o, x))
end
"""


# --- the server --------------------------------------------------------------------------


def create_admin(env: dict[str, str]) -> None:
    """`memory-admin createuser benchadmin --admin` (a reused database may already have it)."""
    proc = subprocess.run(
        [*memory_admin_command(), "createuser", ADMIN, "--admin", "--password-stdin"],
        env=env,
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0 and "exist" not in proc.stderr.lower():
        raise BenchError(f"memory-admin createuser failed: {proc.stderr.strip()}")


# --- the client --------------------------------------------------------------------------


def new_client(base_url: str, cookies: httpx.Cookies | None = None) -> httpx.AsyncClient:
    """A keep-alive client that asks for HTML and does not follow redirects."""
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"Accept": "text/html"},
        cookies=cookies,
        follow_redirects=False,
        timeout=30.0,
    )


def expect(response: httpx.Response, status: int) -> httpx.Response:
    """response, if its status is the expected one; else an error naming what came."""
    if response.status_code != status:
        where = response.headers.get("location", "")
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path} gave "
            f"{response.status_code} {where}, not {status}"
        )
    return response


async def log_in(client: httpx.AsyncClient) -> str:
    """Log in as the bench admin like a browser; the session's CSRF token."""
    form = expect(await client.get("/login"), 200)
    token = CSRF_INPUT.search(form.text)
    if token is None:
        raise BenchError("no csrf_token on /login")
    data = {
        "username": ADMIN,
        "password": PASSWORD,
        "csrf_token": html.unescape(token.group(1)),
        "next": "/",
    }
    expect(await client.post("/login", data=data), 303)
    if "ma_session" not in client.cookies:
        raise BenchError("POST /login set no ma_session cookie")
    page = expect(await client.get("/memories"), 200)
    found = SESSION_CSRF.search(page.text)
    if found is None:
        raise BenchError("no X-CSRF-Token in <body hx-headers> after logging in")
    return html.unescape(found.group(1))


def page_ids(text: str) -> list[int]:
    """The memory ids a list or Trash page shows, in order."""
    return [int(a or b) for a, b in IDS.findall(text)]


async def page_url(client: httpx.AsyncClient, start: str, depth: int) -> tuple[str, int]:
    """The URL reached from start by following rel="next" depth times, and how many it took."""
    url, followed = start, 0
    for _ in range(depth):
        found = NEXT.search(expect(await client.get(url), 200).text)
        if found is None:
            break
        url, followed = html.unescape(found.group(1)), followed + 1
    return url, followed


# --- what is timed -----------------------------------------------------------------------


@dataclass
class Variant:
    """One way of asking for a query over HTTP (full page, partial, post), and its timings."""

    what: str
    target_ms: float | None  # None: no target, no PASS/FAIL
    fetch: Fetch
    side: Side = field(default_factory=Side)
    sizes: list[int] = field(default_factory=list)
    ids_match: bool | None = None


@dataclass
class Probe:
    """One query: its HTTP variants, and bench_queries.py's floor for the same rows."""

    name: str
    label: str
    variants: list[Variant]
    floor: Fetch
    floor_side: Side = field(default_factory=Side)
    check_ids: bool = True
    editor: Editor | None = None
    floor_view: Callable[[list[int]], list[int]] | None = None
    """What of the floor's ids a page shows, if not all of them (applied untimed)."""


def get_fetch(
    client: httpx.AsyncClient,
    urls: Iterator[str],
    headers: dict[str, str],
    sizes: list[int],
    shown: Callable[[str], list[int]] = page_ids,
) -> Fetch:
    """A Fetch that GETs the next URL (200 expected) and returns what it shows (by default
    the memory ids)."""

    async def fetch() -> list[int]:
        """GET the next URL; the ids it shows."""
        response = expect(await client.get(next(urls), headers=headers), 200)
        sizes.append(len(response.content))
        return shown(response.text)

    return fetch


def list_probe(client: httpx.AsyncClient, case: Case, url: str, label: str | None = None) -> Probe:
    """A list query: the full page and the htmx partial of url, against case's floor."""
    variants = []
    for what, headers in (("full page", {}), ("htmx partial", HX)):
        sizes: list[int] = []
        fetch = get_fetch(client, itertools.repeat(url), headers, sizes)
        variants.append(Variant(what, LIST_P95_MS, fetch, sizes=sizes))
    return Probe(case.name, label or case.label, variants, case.floor)


def dashboard_numbers(text: str) -> list[int]:
    """The dashboard's four counts, then the ids of the memories its three lists link to."""
    counts = [int(value.replace(",", "")) for value in STAT_VALUE.findall(text)]
    return counts + [int(memory_id) for memory_id in MEMORY_LINK.findall(text)]


def user_counts(text: str) -> list[int]:
    """The users list's active, expired and deleted counts, user after user."""
    return [int(value.replace(",", "")) for row in USER_COUNTS.findall(text) for value in row]


def counts_only(values: list[int]) -> list[int]:
    """U1's floor without the user ids (id, active, expired, deleted per user): the page
    shows names, not ids."""
    return [value for i, value in enumerate(values) if i % 4]


def page_probe(
    client: httpx.AsyncClient,
    case: Case,
    url: str,
    shown: Callable[[str], list[int]],
    floor_view: Callable[[list[int]], list[int]] | None = None,
) -> Probe:
    """A page with no target (D1, U1): the full page of url, against case's floor; shown
    reads the page's values, floor_view picks those of the floor's the page shows."""
    sizes: list[int] = []
    fetch = get_fetch(client, itertools.repeat(url), {}, sizes, shown)
    variant = Variant("full page", None, fetch, sizes=sizes)
    label = f"{case.label} ({url})"
    return Probe(case.name, label, [variant], case.floor, floor_view=floor_view)


def detail_probe(client: httpx.AsyncClient, case: Case, ids: list[int]) -> Probe:
    """Q8: the detail page of a different memory each run (the floor's ids, in step)."""
    sizes: list[int] = []
    urls = (f"/memories/{memory_id}" for memory_id in itertools.cycle(ids))
    base = get_fetch(client, urls, {}, sizes)
    variant = Variant("detail page", ONE_P95_MS, base, sizes=sizes)
    return Probe("Q8", case.label, [variant], case.floor, check_ids=False)


@dataclass
class Editor:
    """The importance edits of one memory: its version as the bench tracks it."""

    client: httpx.AsyncClient
    memory_id: int
    csrf: str
    version: int
    values: Iterator[float]
    posts: int = 0

    async def post(self, *, htmx: bool) -> list[int]:
        """Set the next importance with a form post: 303 plain, 200 with HX-Request."""
        data = {
            "importance": f"{next(self.values):.2f}",
            "version": str(self.version),
            "csrf_token": self.csrf,
            "next": "/memories",
            "view": "row",
        }
        headers = {**HX, "X-CSRF-Token": self.csrf} if htmx else {}
        response = await self.client.post(
            f"/memories/{self.memory_id}/importance", data=data, headers=headers
        )
        expect(response, 200 if htmx else 303)
        # A browser would follow the redirect and show (and drop) the flash message.
        self.client.cookies.delete("ma_flash")
        self.version += 1
        self.posts += 1
        return []


async def write_probe(client: httpx.AsyncClient, case: Case, memory_id: int, csrf: str) -> Probe:
    """W1: importance edits as a plain form post and as an htmx post, alternating values."""
    detail = expect(await client.get(f"/memories/{memory_id}"), 200)
    found = IMPORTANCE_FORM.search(detail.text)
    if found is None:
        raise BenchError(f"no importance form with a version on /memories/{memory_id}")
    version, importance = int(found.group(1)), float(found.group(2))
    editor = Editor(client, memory_id, csrf, version, alternating(importance))

    async def plain() -> list[int]:
        """One plain form post."""
        return await editor.post(htmx=False)

    async def htmx() -> list[int]:
        """One htmx post."""
        return await editor.post(htmx=True)

    variants = [
        Variant("form post (303)", ONE_P95_MS, plain),
        Variant("htmx post (200)", ONE_P95_MS, htmx),
    ]
    return Probe("W1", case.label, variants, case.floor, check_ids=False, editor=editor)


async def measure(probe: Probe, *, runs: int, warmup: int) -> None:
    """Warm up, then time every variant and the floor alternately, runs times each."""
    for i in range(warmup + runs):
        for variant in probe.variants:
            await timed(variant.fetch, variant.side, record=i >= warmup)
        await timed(probe.floor, probe.floor_side, record=i >= warmup)
    floor = probe.floor_side.ids
    if not probe.check_ids or floor is None:
        return
    if probe.floor_view is not None:
        floor = probe.floor_view(floor)
    for variant in probe.variants:
        if variant.side.ids is None:
            continue
        variant.ids_match = variant.side.ids == floor
        if not variant.ids_match:
            print(
                f"  WARNING {probe.name} {variant.what}: the page and the floor show different"
                f" rows (first ids {variant.side.ids[:3]} vs {floor[:3]})",
                flush=True,
            )


# --- throughput --------------------------------------------------------------------------


def wrk_throughput(
    server: Server, url: str, cookie: str, args: argparse.Namespace
) -> dict[str, Any]:
    """Run wrk on url (HX-Request, the session cookie) and count the 200s it got."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_LUA)
    command = [
        "wrk",
        f"-t{min(2, args.concurrency)}",
        f"-c{args.concurrency}",
        f"-d{args.duration}s",
        "--latency",
        "-s",
        script.name,
        "-H",
        "HX-Request: true",
        "-H",
        "Accept: text/html",
        "-H",
        f"Cookie: ma_session={cookie}",
        server.base_url + url,
    ]
    cpu_before, server_before = children_cpu(), server.cpu_seconds()
    start = time.perf_counter()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, check=True)
    finally:
        os.unlink(script.name)
    wall = time.perf_counter() - start
    client_cpu, server_cpu = children_cpu() - cpu_before, server.cpu_seconds() - server_before
    out = proc.stdout
    counts = re.search(r"BENCH ok=(\d+) other=(\d+)", out)
    seconds = wrk_seconds(out, wall)
    ok, other = (int(counts.group(1)), int(counts.group(2))) if counts else (0, 0)
    latency = wrk_latency(out)
    return {
        "client": "wrk",
        "seconds": seconds,
        "ok": ok,
        "other": other,
        "rps": ok / seconds,
        "latency_ms": latency,
        "client_cpu": client_cpu / wall,
        "server_cpu": server_cpu / wall,
        "server_cpu_ms_per_request": server_cpu * 1000 / max(1, ok + other),
    }


async def httpx_throughput(
    server: Server, url: str, cookies: httpx.Cookies, args: argparse.Namespace
) -> dict[str, Any]:
    """args.concurrency async httpx clients on url (HX-Request) for args.duration seconds."""
    ok = other = 0
    times: list[float] = []

    async def worker(deadline: float) -> None:
        """GET url over one keep-alive connection until deadline."""
        nonlocal ok, other
        async with new_client(server.base_url, httpx.Cookies(cookies)) as client:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                response = await client.get(url, headers=HX)
                times.append((time.perf_counter() - start) * 1000)
                if response.status_code == 200:
                    ok += 1
                else:
                    other += 1

    cpu_before, server_before = time.process_time(), server.cpu_seconds()
    start = time.perf_counter()
    await asyncio.gather(*(worker(start + args.duration) for _ in range(args.concurrency)))
    wall = time.perf_counter() - start
    server_cpu = server.cpu_seconds() - server_before
    return {
        "client": "httpx",
        "seconds": wall,
        "ok": ok,
        "other": other,
        "rps": ok / wall,
        "latency_ms": client_latency(times),
        "client_cpu": (time.process_time() - cpu_before) / wall,
        "server_cpu": server_cpu / wall,
        "server_cpu_ms_per_request": server_cpu * 1000 / max(1, ok + other),
    }


# --- one database ------------------------------------------------------------------------


async def run_http(
    name: str, url: str, raw: Raw, server: Server, args: argparse.Namespace
) -> dict[str, Any]:
    """Log in, build the probes from bench_queries.py's cases, time them, then throughput."""
    engine = create_engine(Settings(database_url=url, secret_key="bench"))
    load_before = os.getloadavg()[0]
    try:
        params = await choose_params(raw, args.warmup + args.runs)
        print(
            f"{name}: {params.rows:,} memories; {HEAVY_USER}, namespace {params.namespace!r}, "
            f"word {params.word!r} ({params.word_share:.1%}), tag {params.tag!r} "
            f"({params.tag_share:.1%}); server {server.base_url}",
            flush=True,
        )
        cases = {
            case.name: case for case in await ServiceBench(Database(engine), raw, params).cases()
        }
        async with new_client(server.base_url) as client:
            csrf = await log_in(client)
            probes = await build_probes(client, cases, params, csrf)
            for probe in probes:
                await measure(probe, runs=args.runs, warmup=args.warmup)
                for cells in probe_rows(probe):
                    print("  " + " | ".join(cells), flush=True)
            await check_version(client, probes[-1])
            throughput = await measure_throughput(server, client, probes[1], args)
    finally:
        await raw.close()
        await engine.dispose()
    problems = server.log_problems()
    if problems:
        print(f"  WARNING the server logged {len(problems)} error lines, e.g. {problems[0]}")
    return {
        "db": name,
        "rows": params.rows,
        "load_average": [load_before, os.getloadavg()[0]],
        "user": HEAVY_USER,
        "namespace": params.namespace,
        "word": params.word,
        "tag": params.tag,
        "probes": [probe_json(probe) for probe in probes],
        "throughput": throughput,
        "server_log_errors": problems[:20],
    }


async def build_probes(
    client: httpx.AsyncClient, cases: dict[str, Case], params: Params, csrf: str
) -> list[Probe]:
    """Every HTTP probe, in bench_queries.py's order (the write last: it reorders Q1)."""
    heavy = f"user={HEAVY_USER}"
    prefix = quote(namespace_prefix(params.namespace) + "/")
    deep_url, followed = await page_url(client, "/memories", DEPTH)
    print(f"  page {followed + 1} of /memories reached by {followed} rel=next links", flush=True)
    probes = [
        list_probe(client, cases["Q1"], "/memories"),
        list_probe(client, cases["Q2"], f"/memories?{heavy}&sort=-importance"),
        list_probe(client, cases["Q3"], f"/memories?{heavy}&namespace={params.namespace}"),
        list_probe(client, cases["Q4"], f"/memories?q={params.word}"),
        list_probe(client, cases["Q5"], f"/memories?tag={params.tag}"),
        list_probe(client, cases["Q6"], deep_url, f"Q6 Q1 at page {followed + 1} (rel=next)"),
        list_probe(client, cases["Q7"], f"/trash?{heavy}", f"Q7 {HEAVY_USER} Trash (/trash)"),
        list_probe(client, cases["F1"], "/memories?sort=created_at"),
        list_probe(client, cases["F2"], "/memories?sort=-access_count"),
        list_probe(client, cases["F3"], "/memories?sort=-last_accessed_at"),
        list_probe(client, cases["F4"], f"/memories?min_importance={MIN_IMPORTANCE}"),
        list_probe(client, cases["F5"], f"/memories?expiring_within={EXPIRING_WITHIN_DAYS}"),
        list_probe(client, cases["F6"], f"/memories?namespace={prefix}"),
        detail_probe(client, cases["Q8"], params.get_ids),
        page_probe(client, cases["D1"], "/", dashboard_numbers),
        page_probe(client, cases["U1"], "/users", user_counts, counts_only),
        await write_probe(client, cases["W1"], params.write_ids[0], csrf),
    ]
    return probes


async def check_version(client: httpx.AsyncClient, probe: Probe) -> None:
    """After W1, the memory's version must be where the bench's count of edits puts it."""
    editor = probe.editor
    if editor is None:
        return
    detail = expect(await client.get(f"/memories/{editor.memory_id}"), 200)
    found = IMPORTANCE_FORM.search(detail.text)
    shown = int(found.group(1)) if found else None
    if shown != editor.version:
        print(
            f"  WARNING W1: memory {editor.memory_id} is at version {shown} after "
            f"{editor.posts} edits, expected {editor.version}",
            flush=True,
        )


async def measure_throughput(
    server: Server, client: httpx.AsyncClient, q2: Probe, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Q2's partial under args.concurrency keep-alive clients: wrk if installed, and httpx."""
    url = f"/memories?user={HEAVY_USER}&sort=-importance"
    expect(await client.get(url, headers=HX), 200)
    results = []
    if shutil.which("wrk"):
        cookie = client.cookies["ma_session"]
        results.append(await asyncio.to_thread(wrk_throughput, server, url, cookie, args))
    results.append(await httpx_throughput(server, url, client.cookies, args))
    for result in results:
        print("  " + throughput_line(result), flush=True)
    return results


# --- report ------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    """A time in ms with one decimal, or - for none."""
    return "-" if value is None else f"{value:.1f}"


def _target(target_ms: float | None) -> str:
    """A target p95 as the table shows it: `< 30`, or - for none."""
    return "-" if target_ms is None else f"< {target_ms:.0f}"


def probe_rows(probe: Probe) -> list[list[str]]:
    """The table's cells for each variant of a probe."""
    floor = probe.floor_side.p95
    rows = []
    for variant in probe.variants:
        side, target = variant.side, variant.target_ms
        if side.error is not None:
            error = "error: " + side.error.replace("|", "\\|")
            verdict = [
                error,
                "-",
                _ms(floor),
                "-",
                _target(target),
                "-" if target is None else "FAIL",
            ]
        else:
            p95 = side.p95
            ratio = f"{p95 / floor:.0f}x" if p95 is not None and floor else "-"
            passed = p95 is not None and target is not None and p95 < target
            verdict = [
                _ms(side.median),
                _ms(p95),
                _ms(floor) if probe.floor_side.error is None else "error",
                ratio,
                _target(target),
                "-" if target is None else "PASS" if passed else "FAIL",
            ]
        size = f"{statistics.median(variant.sizes) / 1024:.0f}" if variant.sizes else "-"
        rows.append([probe.label, variant.what, *verdict, size])
    return rows


def throughput_line(result: dict[str, Any]) -> str:
    """One throughput run as a sentence, with PASS/FAIL against the target."""
    verdict = "PASS" if result["rps"] >= THROUGHPUT_RPS else "FAIL"
    latency = ", ".join(f"{k} {v:.1f} ms" for k, v in result["latency_ms"].items())
    return (
        f"Q2 partial, {result['client']}: {result['rps']:.0f} requests/s "
        f"({result['ok']:,} x 200, {result['other']} other in {result['seconds']:.1f} s; "
        f"{latency}); server CPU {result['server_cpu']:.0%} of a core "
        f"({result['server_cpu_ms_per_request']:.1f} ms a request), client CPU "
        f"{result['client_cpu']:.0%}; target >= {THROUGHPUT_RPS:.0f}/s: {verdict}"
    )


def probe_json(probe: Probe) -> dict[str, Any]:
    """One probe's raw numbers for --json."""
    floor = probe.floor_side
    return {
        "name": probe.name,
        "label": probe.label,
        "floor": {
            "median_ms": floor.median,
            "p95_ms": floor.p95,
            "error": floor.error,
            "times_ms": floor.times_ms,
        },
        "variants": [
            {
                "what": v.what,
                "cells": cells,
                "target_ms": v.target_ms,
                "median_ms": v.side.median,
                "p95_ms": v.side.p95,
                "error": v.side.error,
                "ids_match": v.ids_match,
                "body_bytes": statistics.median(v.sizes) if v.sizes else None,
                "times_ms": v.side.times_ms,
            }
            for v, cells in zip(probe.variants, probe_rows(probe), strict=True)
        ],
    }


def p95_of(result: dict[str, Any], name: str, what: str) -> float | None:
    """The p95 of one probe's variant in a database's result."""
    for probe in result["probes"]:
        for variant in probe["variants"]:
            if probe["name"] == name and variant["what"] == what:
                p95: float | None = variant["p95_ms"]
                return p95
    return None


def print_report(results: list[dict[str, Any]]) -> None:
    """A Markdown table per database, the depth ratios and throughput, then for scale."""
    for result in results:
        before, after = result["load_average"]
        print(f"\n### {result['db']} ({result['rows']:,} memories)\n")
        print(f"1-minute load average {before:.1f} before, {after:.1f} after (2 cores)\n")
        print(
            "| query | what | median ms | p95 ms | raw-SQL floor p95 ms | p95 / floor "
            "| target p95 ms | result | body KB |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---|---:|")
        for probe in result["probes"]:
            for variant in probe["variants"]:
                cells = variant["cells"]
                print("| " + " | ".join(cells) + " |")
        print()
        for what in ("full page", "htmx partial"):
            q1, q6 = p95_of(result, "Q1", what), p95_of(result, "Q6", what)
            if q1 and q6 is not None:
                ratio = round(q6 / q1, 2)  # judged as shown
                verdict = "PASS" if ratio <= DEPTH_RATIO else "FAIL"
                print(
                    f"- page 200 vs page 1, {what}: p95 {q6:.1f} / {q1:.1f} ms = "
                    f"{ratio:.2f}x (target <= {DEPTH_RATIO}x): {verdict}"
                )
        for run in result["throughput"]:
            print(f"- {throughput_line(run)}")
    by_db = {result["db"]: result for result in results}
    print("\n### For scale: best of SQLAdmin / starlette-admin / Django admin (SQLite, p95)\n")
    print("| query | others p95 ms | ours SQLite full page p95 | ours PostgreSQL full page p95 |")
    print("|---|---:|---:|---:|")
    for name, theirs in OTHERS_P95_MS.items():
        what = {"Q8": "detail page", "W1": "form post (303)"}.get(name, "full page")
        ours = [
            _ms(p95_of(by_db[db], name, what)) if db in by_db else "-"
            for db in ("sqlite", "postgresql")
        ]
        print(f"| {name} | {theirs:,} | {ours[0]} | {ours[1]} |")
    rps = [
        f"{db} {max(run['rps'] for run in by_db[db]['throughput']):.0f}/s"
        for db in ("sqlite", "postgresql")
        if db in by_db and by_db[db]["throughput"]
    ]
    print(f"\nQ2 throughput: others at most {OTHERS_RPS}/s; ours {', '.join(rps)}")


# --- main --------------------------------------------------------------------------------


def bench_database(
    name: str,
    url: str,
    raw_factory: Callable[[], Awaitable[Raw]],
    args: argparse.Namespace,
    log_dir: Path,
) -> dict[str, Any]:
    """Create the admin, start the server on url's database, and time everything."""
    secret = secrets.token_urlsafe(32)
    create_admin(server_env(url, secret))
    with running_server(url, secret, args.port or free_port(), log_dir) as server:

        async def go() -> dict[str, Any]:
            """Connect the floor's driver and run everything in one event loop."""
            return await run_http(name, url, await raw_factory(), server, args)

        result = asyncio.run(go())
    return result


def main() -> None:
    """The admin app's pages over HTTP."""
    run_main(
        __doc__,
        "http",
        bench_database,
        print_report,
        lambda args: {"runs": args.runs, "warmup": args.warmup, "page": PAGE},
    )


if __name__ == "__main__":
    main()
