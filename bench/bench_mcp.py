#!/usr/bin/env python3
"""Latency of the MCP tools over streamable HTTP (/mcp) against the same REST calls.

For each database (a SQLite file, a PostgreSQL database; loaded as bench_api.py loads
them, or reused with --sqlite-path / --postgres-url) it creates an API token for the
heavy user (`memory-admin token create user-00001`), starts uvicorn with one worker as
bench_api.py does, and opens two keep-alive clients with that token: httpx on /api/v1, and
the MCP SDK's own client on /mcp (one session, begun with `initialize`, before timing).
Then it times each tool call beside the REST request that does the same, alternately:

    remember   tools/call remember {namespace, key, content, tags, importance}, a new key
               beside   PUT /api/v1/memories with the same body, another new key (201)
    recall     tools/call recall {namespace, key}, an active key of user-00001
               beside   GET /api/v1/recall, the same keys in the same order
    search     tools/call search {query: WORD, limit: 10}, WORD in ~2% of rows
               beside   POST /api/v1/search with the same body (the same ids, checked)

The MCP side is timed in the client as an agent sees it: the SDK builds the JSON-RPC
request and reads the result (its structured content checked against the tool's output
schema). The target: each tool call's p95 within 2x of its REST call's. It prints a
Markdown table per database with PASS/FAIL, never failing the exit status for a miss.
Not a test: numbers vary with the machine's load. It writes memories of user-00001 in
namespace bench/mcp (keys prefixed with a per-run id), their events and access counts, and
one API token (revoked at the end), so a reused database grows a little.

    python bench/bench_mcp.py --rows 2000 --runs 30       # quick try (a minute)
    python bench/bench_mcp.py --file /tmp/m1m.jsonl --keep --json   # a million rows
    python bench/bench_mcp.py --sqlite-path PATH --postgres-url URL # reuse loaded databases
"""

from __future__ import annotations

import argparse
import itertools
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
from bench_api import (
    SEARCH_LIMIT,
    Pair,
    Token,
    api_client,
    content_for,
    expect_json,
    measure,
    recall_keys,
    wait_for_vectors,
    with_token_and_server,
)
from common import HEAVY_USER, Raw, Side, choose_params, ms_text
from harness import (
    Server,
    run_main,
)
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

API = "/api/v1"
NAMESPACE = "bench/mcp"
TAGS = ["bench", "mcp"]
RATIO_TARGET = 2.0
"""A tool call's p95 may be at most this many times its REST call's."""


@asynccontextmanager
async def mcp_client(base_url: str, token: Token) -> AsyncIterator[Client]:
    """An MCP session with /mcp as the token's user, begun with `initialize`."""
    headers = {"Authorization": f"Bearer {token.secret}"}
    async with httpx2.AsyncClient(headers=headers, timeout=30.0) as http:
        transport = streamable_http_client(base_url + "/mcp", http_client=http)
        async with Client(transport, mode="legacy", raise_exceptions=True) as client:
            yield client


async def tool(client: Client, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """Call a tool; its structured result, or an error with the tool's message."""
    result = await client.call_tool(name, arguments)
    if result.is_error or result.structured_content is None:
        text = result.content[0].text if result.content else "no content"  # type: ignore[union-attr]
        raise RuntimeError(f"tool {name} failed: {text}")
    return result.structured_content


def body(run: str, side: str, i: int) -> dict[str, Any]:
    """A memory to write: the same shape on both sides, on keys of each side's own."""
    return {
        "namespace": NAMESPACE,
        "key": f"{run}-{side}-{i}",
        "content": content_for(run, i, 0),
        "tags": TAGS,
        "importance": 0.5,
    }


def remember_pair(mcp: Client, rest: httpx.AsyncClient, run: str) -> Pair:
    """remember a new key beside PUT of a new key."""
    mcp_count, rest_count = itertools.count(), itertools.count()

    async def over_mcp() -> list[int]:
        done = await tool(mcp, "remember", body(run, "mcp", next(mcp_count)))
        if done["result"] != "created":
            raise RuntimeError(f"remember said {done['result']}, not created")
        return [done["memory"]["id"]]

    async def over_rest() -> list[int]:
        sent = body(run, "rest", next(rest_count))
        return [expect_json(await rest.put(f"{API}/memories", json=sent), 201)["id"]]

    return Pair("remember", "a new key (created)", None, over_mcp, over_rest)


def recall_pair(mcp: Client, rest: httpx.AsyncClient, keys: list[tuple[str, str]]) -> Pair:
    """recall beside GET /recall, each on the same keys in turn."""
    mcp_keys, rest_keys = itertools.cycle(keys), itertools.cycle(keys)

    async def over_mcp() -> list[int]:
        namespace, key = next(mcp_keys)
        return [(await tool(mcp, "recall", {"namespace": namespace, "key": key}))["id"]]

    async def over_rest() -> list[int]:
        namespace, key = next(rest_keys)
        params = {"namespace": namespace, "key": key}
        return [expect_json(await rest.get(f"{API}/recall", params=params), 200)["id"]]

    pair = Pair("recall", f"an active key of {HEAVY_USER}", None, over_mcp, over_rest)
    pair.check = "the same memory, key by key"
    return pair


def search_pair(mcp: Client, rest: httpx.AsyncClient, word: str) -> Pair:
    """search beside POST /search, the same body."""
    query = {"query": word, "limit": SEARCH_LIMIT}

    async def over_mcp() -> list[int]:
        return [item["id"] for item in (await tool(mcp, "search", query))["items"]]

    async def over_rest() -> list[int]:
        found = expect_json(await rest.post(f"{API}/search", json=query), 200)
        return [item["id"] for item in found["items"]]

    return Pair("search", f'"{word}", limit {SEARCH_LIMIT}', None, over_mcp, over_rest)


def ratio(pair: Pair) -> float | None:
    """The tool call's p95 over the REST call's."""
    mcp, rest = pair.api_side.p95, pair.floor_side.p95
    return mcp / rest if mcp is not None and rest else None


def check(pair: Pair) -> None:
    """recall and search: both sides' first answers name the same memories."""
    if pair.request == "remember":
        pair.check = "each created at version 1"
        return
    same = pair.api_side.ids == pair.floor_side.ids
    pair.check = "same ids" if same else f"DIFFERENT: {pair.api_side.ids} / {pair.floor_side.ids}"


async def run_mcp(
    name: str, raw: Raw, server: Server, token: Token, args: argparse.Namespace
) -> dict[str, Any]:
    """Choose the parameters, open both clients, time each pair."""
    load_before = os.getloadavg()[0]
    run = uuid.uuid4().hex[:8]
    try:
        params = await choose_params(raw, 1)
        await wait_for_vectors(raw, params.user_id)
        keys = await recall_keys(raw, params.user_id, args.warmup + args.runs)
    finally:
        await raw.close()
    print(
        f"{name}: {params.rows:,} memories; {HEAVY_USER} (token {token.id}), search word "
        f"{params.word!r} ({params.word_share:.1%} of rows), run {run}; {server.base_url}",
        flush=True,
    )
    async with (
        api_client(server.base_url, token) as rest,
        mcp_client(server.base_url, token) as mcp,
    ):
        pairs = [
            remember_pair(mcp, rest, run),
            recall_pair(mcp, rest, keys),
            search_pair(mcp, rest, params.word),
        ]
        for pair in pairs:
            await measure([pair], runs=args.runs, warmup=args.warmup)
            check(pair)
            print("  " + " | ".join(cells(pair)), flush=True)
    problems = server.log_problems()
    if problems:
        print(f"  WARNING the server logged {len(problems)} error lines, e.g. {problems[0]}")
    return {
        "db": name,
        "runs": args.runs,
        "rows": params.rows,
        "load_average": [load_before, os.getloadavg()[0]],
        "word": params.word,
        "run": run,
        "tools": [pair_json(pair) for pair in pairs],
        "server_log_errors": problems[:20],
    }


# --- report ------------------------------------------------------------------------------


def cells(pair: Pair) -> list[str]:
    """tool, what, REST median and p95, MCP median and p95, ratio of p95s, result, check."""
    found = ratio(pair)
    verdict = "-" if found is None else ("PASS" if found <= RATIO_TARGET else "FAIL")
    return [
        pair.request,
        pair.what,
        *pair.floor_side.cells(),
        *pair.api_side.cells(),
        "-" if found is None else f"{found:.2f}x",
        verdict,
        pair.check,
    ]


def pair_json(pair: Pair) -> dict[str, Any]:
    """One tool's figures for --json."""

    def side(timings: Side) -> dict[str, Any]:
        return {"median_ms": timings.median, "p95_ms": timings.p95, "error": timings.error}

    return {
        "tool": pair.request,
        "what": pair.what,
        "rest": side(pair.floor_side),
        "mcp": side(pair.api_side),
        "p95_ratio": ratio(pair),
        "target_ratio": RATIO_TARGET,
        "check": pair.check,
    }


def print_report(results: list[dict[str, Any]]) -> None:
    """A Markdown table per database."""
    for result in results:
        print(
            f"\n### {result['db']}: {result['rows']:,} rows, {result['runs']} timed runs each "
            f"(load average {result['load_average'][0]:.2f} -> {result['load_average'][1]:.2f})\n"
        )
        print(
            "| tool | what | REST median ms | REST p95 ms | MCP median ms | MCP p95 ms "
            f"| MCP p95 / REST p95 | <= {RATIO_TARGET:.0f}x | check |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for tool_result in result["tools"]:
            found = tool_result["p95_ratio"]
            mcp, rest = tool_result["mcp"], tool_result["rest"]
            verdict = "-" if found is None else ("PASS" if found <= RATIO_TARGET else "FAIL")
            row = [
                tool_result["tool"],
                tool_result["what"],
                ms_text(rest["median_ms"]),
                ms_text(rest["p95_ms"]),
                ms_text(mcp["median_ms"]),
                ms_text(mcp["p95_ms"]),
                "-" if found is None else f"{found:.2f}x",
                verdict,
                tool_result["check"],
            ]
            print("| " + " | ".join(row) + " |")


def bench_database(
    name: str,
    url: str,
    raw_factory: Callable[[], Awaitable[Raw]],
    args: argparse.Namespace,
    log_dir: Path,
) -> dict[str, Any]:
    """Time the pairs on url's database (bench_api.with_token_and_server)."""

    async def run(raw: Raw, server: Server, token: Token) -> dict[str, Any]:
        return await run_mcp(name, raw, server, token, args)

    return with_token_and_server(url, raw_factory, args, log_dir, run)


def main() -> None:
    """Parse the options, bench each database, report, write --json (harness.run_main)."""
    run_main(
        __doc__,
        "mcp",
        bench_database,
        print_report,
        lambda args: {"runs": args.runs, "warmup": args.warmup},
        throughput=False,
    )


if __name__ == "__main__":
    main()
