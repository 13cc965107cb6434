#!/usr/bin/env python3
"""Latency and throughput of the JSON API for agents (/api/v1), against a raw-SQL floor.

For each database (a SQLite file, a PostgreSQL database; loaded as bench_queries.py loads
them, or reused with --sqlite-path / --postgres-url) it creates an API token for the
heavy user with `memory-admin token create user-00001` (the secret: the last line it
prints), starts `uvicorn webapp.main:create_app --factory --workers 1` as bench_http.py
does, and times with httpx and keep-alive, `Authorization: Bearer <token>`:

    PUT /api/v1/memories   create   a new key in namespace bench/api (201, version 1)
    PUT /api/v1/memories   update   the key just created, new content (200, version 2)
    GET /api/v1/recall     an active key of user-00001 (a different one each run)
    POST /api/v1/search    {"query": WORD, "limit": 10}, WORD in ~2% of rows, and the same
                           for QUESTION, a sentence of common words

Each request is set against a raw-SQL floor (sqlite3 or asyncpg in this process), timed
alternately in the same run:

    create, update  one transaction (BEGIN IMMEDIATE on SQLite): INSERT ... ON CONFLICT
                    (user_id, namespace, key) DO UPDATE ... RETURNING id, version, and the
                    audit row INSERT INTO memory_event (`create`, or `update` with the
                    content's old and new value), each on keys of its own
    recall          UPDATE long_term_memory SET access_count = access_count + 1 ...
                    WHERE user_id, namespace, key and active RETURNING the row, on the
                    same keys as the API
    search          the text part of webapp/services/search.py's ranking written by hand
                    (FTS5 bm25 or ts_rank, importance, recency, access; best 10), then the
                    UPDATE ... RETURNING that counts the access to those 10. The app does
                    more (it embeds the query and compares it with the user's vectors,
                    then reads the candidates' neighbours), so its answer is not the
                    floor's: the check reports how many of the 10 ids they share

Before timing, it waits until the app's background embedder has given the heavy user's
queued memories (a previous run's writes) their vectors, so that the figures are those of
the steady state; the hand-written ranking is checked against the API's answer (same ids,
same order), and recall's floor against the API's ids. Then throughput: upserts of
distinct new keys from 4 concurrent keep-alive clients for --duration seconds (wrk with a
Lua script when /usr/bin/wrk is there, and async httpx), requests/s with the CPU the
server used per request. It prints a Markdown table per database with PASS/FAIL against
the targets (recall p95 < 10 ms, search p95 < 30 ms, upserts >= 300/s on SQLite and
>= 500/s on PostgreSQL), never failing the exit status for a miss. Not a test: numbers
vary with the machine's load. It writes: memories of user-00001 in namespace bench/api
(keys prefixed with a per-run id), their events, access counts, and one API token
(revoked at the end), so a reused database grows a little.

    python bench/bench_api.py --rows 20000 --runs 10 --duration 5   # quick try
    python bench/bench_api.py --file /tmp/m1m.jsonl --keep --json    # 1M rows, kept
    python bench/bench_api.py --sqlite-path PATH --postgres-url URL  # reuse loaded databases
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import os
import random
import re
import secrets
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from common import (
    HEAVY_USER,
    SEARCH_LANGUAGE,
    BenchError,
    Fetch,
    Params,
    Raw,
    RawPostgres,
    RawSqlite,
    Side,
    children_cpu,
    choose_params,
    client_latency,
    describe,
    timed,
    wrk_latency,
    wrk_seconds,
)
from harness import Server, free_port, memory_admin, run_main, running_server, server_env

from webapp.services.fulltext import STOP_WORDS

API = "/api/v1"
NAMESPACE = "bench/api"
SEARCH_LIMIT = 10
QUESTION = "what does the user prefer in the morning"
"""A question as an agent asks it: at a million generated rows its words 'user' and
'prefer' are in four in five of the heavy user's memories (services/common_words.py)."""
RECALL_P95_MS = 10.0
SEARCH_P95_MS = 30.0
UPSERT_RPS = {"sqlite": 300.0, "postgresql": 500.0}
WRK = Path("/usr/bin/wrk")
CREATED = "every run at version 1"
UPDATED = "every run at version 2"
TAGS = ["bench", "upsert"]
# Words the generated data set does not use, so that the rows written here never match
# the search's word (in this run or a later one on a reused database).
FILLER = (
    "written by bench_api to measure the upsert path of the agent API; filler payload "
    "words follow so that the row is about as long as a typical generated memory, "
    "payload filler sample probe bench revision"
)
MEMORY_COLUMNS = (
    'namespace, "key", content, tags, importance, expires_at, id, user_id, access_count,'
    " last_accessed_at, is_deleted, deleted_at, version, created_at, updated_at"
)
WRK_LUA = """
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end
function init(args)
  prefix, namespace = args[1], args[2]
  n, ok, c4, c5, other = 0, 0, 0, 0, 0
  put_headers = {
    ["Content-Type"] = "application/json",
    ["Accept"] = "application/json",
    ["Authorization"] = "Bearer " .. args[3],
  }
end
function request()
  n = n + 1
  local body = string.format(
    '{"namespace":"%s","key":"%s-t%d-%d","content":"Bench wrk %s %d %s",'
    .. '"tags":["bench","upsert"],"importance":0.5}',
    namespace, prefix, tid, n, prefix, n, "FILLER")
  return wrk.format("PUT", "/api/v1/memories", put_headers, body)
end
function response(status, headers, body)
  if status == 200 or status == 201 then ok = ok + 1
  elseif status >= 500 then c5 = c5 + 1
  elseif status >= 400 then c4 = c4 + 1
  else other = other + 1 end
end
function done(summary, latency, requests)
  local o, a, b, x = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    o = o + t:get("ok"); a = a + t:get("c4"); b = b + t:get("c5"); x = x + t:get("other")
  end
  io.write(string.format("BENCH ok=%d c4=%d c5=%d other=%d\\n", o, a, b, x))
end
""".replace("FILLER", FILLER)


# --- the token ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    """An API token made with the CLI: its id (to revoke it) and its secret."""

    id: int
    secret: str


def create_token(env: dict[str, str]) -> Token:
    """`memory-admin token create user-00001`: the secret is the last line of stdout."""
    out = memory_admin(env, "token", "create", HEAVY_USER, "--name", "bench-api")
    secret = out.splitlines()[-1].strip()
    found = re.search(r"API token (\d+)", out)
    if found is None or not secret:
        raise BenchError(f"cannot read the token from `memory-admin token create`: {out!r}")
    return Token(int(found.group(1)), secret)


def revoke_token(env: dict[str, str], token: Token) -> None:
    """`memory-admin token revoke ID`; a failure is only reported."""
    try:
        memory_admin(env, "token", "revoke", str(token.id))
    except BenchError as exc:
        print(f"  WARNING could not revoke API token {token.id}: {exc}", flush=True)


# --- the client --------------------------------------------------------------------------


def api_client(base_url: str, token: Token) -> httpx.AsyncClient:
    """A keep-alive client that sends the bearer token and asks for JSON."""
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {token.secret}", "Accept": "application/json"},
        timeout=30.0,
    )


def expect_json(response: httpx.Response, status: int) -> Any:
    """The response's JSON, if its status is the expected one; else an error naming the
    status and the start of the body."""
    if response.status_code != status:
        body = response.text[:200].replace("\n", " ")
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path} gave "
            f"{response.status_code}, not {status}: {body}"
        )
    return orjson.loads(response.content)


def memory_body(key: str, content: str) -> dict[str, Any]:
    """A PUT /api/v1/memories body for key in the bench namespace."""
    return {
        "namespace": NAMESPACE,
        "key": key,
        "content": content,
        "tags": TAGS,
        "importance": 0.5,
    }


def content_for(run: str, i: int, edit: int) -> str:
    """The content of the bench's memory i at its edit-th write (0: created)."""
    return f"Bench upsert {run} {i} revision {edit} {FILLER}"


# --- the floor ---------------------------------------------------------------------------


@functools.cache
def numbered(sql: str) -> str:
    """sql with PostgreSQL's $1, $2 ... in place of each ?."""
    numbers = iter(range(1, sql.count("?") + 1))
    return re.sub(r"\?", lambda _: f"${next(numbers)}", sql)


class Floor:
    """The hand-written SQL of each request, through the raw driver, as the token's user."""

    def __init__(self, raw: Raw, user_id: int, token: Token) -> None:
        self.raw = raw
        self.user_id = user_id
        self.token_id = token.id
        self.actor = f"token:{token.id}:{HEAVY_USER}"
        sqlite = raw.dialect == "sqlite"
        no = "0" if sqlite else "false"
        as_json = "" if sqlite else "::jsonb"
        active = f"is_deleted IS {no} AND (expires_at IS NULL OR expires_at > ?)"
        self.upsert_sql = (
            'INSERT INTO long_term_memory (namespace, "key", content, tags, importance,'
            " expires_at, user_id, access_count, is_deleted, version, created_at, updated_at)"
            f" VALUES (?, ?, ?, ?{as_json}, ?, NULL, ?, 0, {no}, 1, ?, ?)"
            ' ON CONFLICT (user_id, namespace, "key") DO UPDATE SET content = excluded.content,'
            " tags = excluded.tags, importance = excluded.importance,"
            f" expires_at = excluded.expires_at, is_deleted = {no}, deleted_at = NULL,"
            " version = long_term_memory.version + 1, updated_at = excluded.updated_at"
            " RETURNING id, version"
        )
        self.event_sql = (
            "INSERT INTO memory_event (memory_id, user_id, actor, actor_user_id,"
            f" actor_token_id, action, changes, created_at) VALUES (?, ?, ?, ?, ?, ?, ?{as_json},"
            " ?)"
        )
        self.recall_sql = (
            "UPDATE long_term_memory SET access_count = access_count + 1, last_accessed_at = ?"
            f' WHERE user_id = ? AND namespace = ? AND "key" = ? AND {active}'
            f" RETURNING {MEMORY_COLUMNS}"
        )
        self.count_sql = (
            "UPDATE long_term_memory SET access_count = access_count + 1, last_accessed_at = ?"
            f" WHERE id IN ({', '.join('?' * SEARCH_LIMIT)}) AND {active}"
            f" RETURNING {MEMORY_COLUMNS}"
        )
        self.rank_sql = rank_sql(raw.dialect)

    async def upsert(self, key: str, content: str, before: str | None) -> tuple[int, int]:
        """Upsert key with content and write its event in one transaction; (id, version).
        before: the content the memory had (None: it is created)."""
        now = self.raw.now()
        tags = orjson.dumps(TAGS).decode()
        values = (NAMESPACE, key, content, tags, 0.5, self.user_id, now, now)
        if before is None:
            action, changes = "create", None
        else:
            action = "update"
            changes = orjson.dumps({"content": {"old": before, "new": content}}).decode()

        def event(memory_id: int) -> tuple[Any, ...]:
            """The event's values for the memory the upsert wrote."""
            return (
                memory_id,
                self.user_id,
                self.actor,
                self.user_id,
                self.token_id,
                action,
                changes,
                now,
            )

        raw = self.raw
        if isinstance(raw, RawSqlite):
            raw.conn.execute("BEGIN IMMEDIATE")
            try:
                row = raw.conn.execute(self.upsert_sql, values).fetchall()[0]
                raw.conn.execute(self.event_sql, event(row["id"]))
            except BaseException:
                raw.conn.execute("ROLLBACK")
                raise
            raw.conn.execute("COMMIT")
        elif isinstance(raw, RawPostgres):
            async with raw.conn.transaction():
                row = await raw.conn.fetchrow(numbered(self.upsert_sql), *values)
                if row is None:
                    raise RuntimeError("the upsert returned no row")
                await raw.conn.execute(numbered(self.event_sql), *event(row["id"]))
        else:
            raise BenchError(f"no floor for {raw.dialect}")
        return row["id"], row["version"]

    async def recall(self, namespace: str, key: str) -> list[int]:
        """Count an access to the active memory at namespace/key and read it; its id."""
        now = self.raw.now()
        rows = await self.raw.fetch(self.recall_sql, now, self.user_id, namespace, key, now)
        return [row["id"] for row in rows]

    async def rank(self, word: str) -> list[int]:
        """The ids of the best SEARCH_LIMIT active memories of the user for word (or the
        words of a question, stop words left out), best first."""
        moment = datetime.now(UTC)
        now = self.raw.stamp(moment)
        terms = [term for term in word.split() if term not in STOP_WORDS]
        if self.raw.dialect == "sqlite":
            # The index's owner word narrows the matches to the user's, as search.py asks.
            any_term = " OR ".join(f'"{term}"' for term in terms)
            match = f'{{owner}} : "u{self.user_id}" AND {{key content}} : ({any_term})'
            params: tuple[Any, ...] = (match, now, self.user_id, now, SEARCH_LIMIT)
        else:
            # Ranked by the words, found with the owner word too, as search.py does.
            words = "(" + " | ".join(f"'{term}':AB" for term in terms) + ")"
            params = (words, f"'u{self.user_id}' & {words}", now, self.user_id, now, SEARCH_LIMIT)
        return [row["id"] for row in await self.raw.fetch(self.rank_sql, *params)]

    async def search(self, word: str) -> list[int]:
        """rank, then count an access to each of those memories (reading them back)."""
        ids = await self.rank(word)
        if not ids:
            return []
        now = self.raw.now()
        padded = [*ids, *[ids[0]] * (SEARCH_LIMIT - len(ids))]  # one statement for any count
        counted = {row["id"] for row in await self.raw.fetch(self.count_sql, now, *padded, now)}
        return [memory_id for memory_id in ids if memory_id in counted]


def rank_sql(dialect: str) -> str:
    """webapp/services/search.py's ranking by hand: the user's active matches, each
    scored 0.55 text + 0.20 importance + 0.15 recency + 0.10 access, best first.
    Parameters: the text query (on PostgreSQL: the words, then the words with the owner
    word), now, the user id, now, the limit."""
    if dialect == "sqlite":
        matches = (
            "SELECT m.id, -bm25(long_term_memory_fts, 2.0, 1.0, 0.0) AS relevance, m.importance,"
            " m.updated_at, m.access_count FROM long_term_memory_fts, long_term_memory AS m"
            " WHERE long_term_memory_fts MATCH ? AND long_term_memory_fts.rowid = m.id"
            " AND m.is_deleted IS 0 AND (m.expires_at IS NULL OR m.expires_at > ?)"
            " AND m.user_id + 0 = ?"
        )
        age = "max(0.0, julianday(?) - julianday(updated_at))"
    else:
        matches = (
            "SELECT id, ts_rank('{0.1, 0.2, 0.5, 1.0}'::float4[], search_vector, query)"
            " AS relevance, importance, updated_at, access_count"
            f" FROM long_term_memory, to_tsquery('{SEARCH_LANGUAGE}', ?) AS query,"
            f" to_tsquery('{SEARCH_LANGUAGE}', ?) AS owned"
            " WHERE search_vector @@ owned AND is_deleted IS false"
            " AND (expires_at IS NULL OR expires_at > ?) AND user_id + 0 = ?"
        )
        age = "greatest(0.0, extract(epoch FROM ?::timestamptz - updated_at) / 86400.0)"
    # The same expressions as search.py's (a + 0.0 and all): the same floating-point
    # rounding, so that near ties fall the same way.
    return (
        f"WITH matches AS ({matches}), scored AS (SELECT id,"
        " CAST(CASE WHEN max(relevance) OVER () > 0"
        " THEN relevance / (max(relevance) OVER () + 0.0) ELSE 0.0 END AS FLOAT) AS text,"
        " CAST(importance AS FLOAT) AS importance,"
        f" CAST(1.0 / ((1.0 + {age} / (30.0 + 0.0)) + 0.0) AS FLOAT) AS recency,"
        " CAST(access_count / ((access_count + 10.0) + 0.0) AS FLOAT) AS access"
        " FROM matches)"
        " SELECT id, 0.0 + 0.55 * text + 0.2 * importance + 0.15 * recency + 0.1 * access"
        " AS score FROM scored ORDER BY score DESC, id DESC LIMIT ?"
    )


async def recall_keys(raw: Raw, user_id: int, needed: int) -> list[tuple[str, str]]:
    """needed (namespace, key) pairs of the user's active memories (not expiring within a
    day), chosen at random with a fixed seed, distinct while there are enough."""
    no = "0" if raw.dialect == "sqlite" else "false"
    rows = await raw.fetch(
        'SELECT namespace, "key" FROM long_term_memory WHERE user_id = ?'
        f" AND is_deleted = {no} AND (expires_at IS NULL OR expires_at > ?)"
        " ORDER BY id LIMIT 5000",
        user_id,
        raw.stamp(datetime.now(UTC) + timedelta(days=1)),
    )
    pairs = [(row["namespace"], row["key"]) for row in rows]
    if not pairs:
        raise BenchError(f"{HEAVY_USER} has no active memories")
    rng = random.Random(20261124)
    if len(pairs) >= needed:
        return rng.sample(pairs, needed)
    return [rng.choice(pairs) for _ in range(needed)]


# --- what is timed -----------------------------------------------------------------------


@dataclass
class Pair:
    """One request over the API beside its raw-SQL floor, and the timings of both."""

    request: str
    what: str
    target_ms: float | None  # None: no target, no PASS/FAIL
    api: Fetch
    floor: Fetch
    api_side: Side = field(default_factory=Side)
    floor_side: Side = field(default_factory=Side)
    check: str = "-"
    """What was checked of the API's answer against the floor's, and how it came out."""


async def measure(pairs: list[Pair], *, runs: int, warmup: int) -> None:
    """Warm up, then time each pair's request and its floor alternately, runs times each."""
    for i in range(warmup + runs):
        for pair in pairs:
            await timed(pair.api, pair.api_side, record=i >= warmup)
            await timed(pair.floor, pair.floor_side, record=i >= warmup)


def upsert_pairs(client: httpx.AsyncClient, floor: Floor, run: str) -> list[Pair]:
    """PUT create and PUT update (of the key just created), each beside the floor's own
    key written the same way."""
    api_count, floor_count = itertools.count(), itertools.count()
    api_key, floor_key = "", ""
    floor_content = ""

    async def api_create() -> list[int]:
        """PUT a new key: 201 at version 1."""
        nonlocal api_key
        i = next(api_count)
        api_key = f"{run}-api-{i}"
        body = memory_body(api_key, content_for(run, i, 0))
        memory = expect_json(await client.put(f"{API}/memories", json=body), 201)
        if memory["version"] != 1 or memory["key"] != api_key:
            raise RuntimeError(f"created {memory['key']} at version {memory['version']}")
        return [memory["id"]]

    async def api_update() -> list[int]:
        """PUT the key just created with new content: 200 at version 2."""
        i = int(api_key.rsplit("-", 1)[1])
        body = memory_body(api_key, content_for(run, i, 1))
        memory = expect_json(await client.put(f"{API}/memories", json=body), 200)
        if memory["version"] != 2 or memory["content"] != body["content"]:
            raise RuntimeError(f"updated {api_key} to version {memory['version']}, not 2")
        return [memory["id"]]

    async def floor_create() -> list[int]:
        """The floor's upsert of a new key, with its create event."""
        nonlocal floor_key, floor_content
        i = next(floor_count)
        floor_key, floor_content = f"{run}-floor-{i}", content_for(run, i, 0)
        memory_id, version = await floor.upsert(floor_key, floor_content, None)
        if version != 1:
            raise RuntimeError(f"the floor created {floor_key} at version {version}")
        return [memory_id]

    async def floor_update() -> list[int]:
        """The floor's upsert of the key it just created, with its update event."""
        i = int(floor_key.rsplit("-", 1)[1])
        memory_id, version = await floor.upsert(floor_key, content_for(run, i, 1), floor_content)
        if version != 2:
            raise RuntimeError(f"the floor updated {floor_key} to version {version}, not 2")
        return [memory_id]

    request = f"PUT {API}/memories"
    return [
        Pair(request, "create a new key (201)", None, api_create, floor_create, check=CREATED),
        Pair(request, "update that key (200)", None, api_update, floor_update, check=UPDATED),
    ]


def recall_pair(client: httpx.AsyncClient, floor: Floor, keys: list[tuple[str, str]]) -> Pair:
    """GET /recall of a different active key each run; the floor recalls the same keys."""
    api_keys, floor_keys = itertools.cycle(keys), itertools.cycle(keys)

    async def api() -> list[int]:
        """One recall: 200 with the memory."""
        namespace, key = next(api_keys)
        params = {"namespace": namespace, "key": key}
        memory = expect_json(await client.get(f"{API}/recall", params=params), 200)
        return [memory["id"]]

    async def floor_recall() -> list[int]:
        """The floor's UPDATE ... RETURNING of the same key."""
        return await floor.recall(*next(floor_keys))

    return Pair(
        f"GET {API}/recall",
        f"an active key of {HEAVY_USER} (200)",
        RECALL_P95_MS,
        api,
        floor_recall,
    )


async def search_pair(client: httpx.AsyncClient, floor: Floor, word: str) -> Pair:
    """POST /search for word, limit 10; checked first against the floor's ranking."""
    body = {"query": word, "limit": SEARCH_LIMIT}

    async def api() -> list[int]:
        """One search: 200 with the ranked items."""
        found = expect_json(await client.post(f"{API}/search", json=body), 200)
        return [item["id"] for item in found["items"]]

    async def floor_search() -> list[int]:
        """The floor's ranking, then its access count."""
        return await floor.search(word)

    pair = Pair(
        f"POST {API}/search", f'"{word}", limit {SEARCH_LIMIT}', SEARCH_P95_MS, api, floor_search
    )
    try:
        expected = await floor.rank(word)  # before the API counts an access: same state
        got = await api()
    except Exception as exc:
        pair.check = f"not checked: {describe(exc)}"
        return pair
    shared = len(set(got) & set(expected))
    pair.check = f"{shared} of the floor's {len(expected)} text matches among the API's {len(got)}"
    return pair


def check_recall(pair: Pair) -> None:
    """After timing: the first recall of the API and of the floor read the same memory."""
    ours, floor = pair.api_side.ids, pair.floor_side.ids
    if ours is None or floor is None:
        return
    pair.check = "same id" if ours == floor else "MISMATCH"
    if ours != floor:
        print(f"  WARNING recall: the API read {ours}, the floor {floor}", flush=True)


# --- throughput --------------------------------------------------------------------------


def wrk_throughput(
    server: Server, token: Token, prefix: str, args: argparse.Namespace
) -> dict[str, Any]:
    """wrk PUTting distinct new keys (a Lua script) with args.concurrency connections."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_LUA)
    command = [
        str(WRK),
        f"-t{min(2, args.concurrency)}",
        f"-c{args.concurrency}",
        f"-d{args.duration}s",
        "--latency",
        "-s",
        script.name,
        server.base_url + f"{API}/memories",
        "--",
        prefix,
        NAMESPACE,
        token.secret,
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
    counts = re.search(r"BENCH ok=(\d+) c4=(\d+) c5=(\d+) other=(\d+)", out)
    seconds = wrk_seconds(out, wall)
    ok, c4, c5, other = (int(n) for n in counts.groups()) if counts else (0, 0, 0, 0)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    latency = wrk_latency(out)
    return {
        "client": "wrk",
        "seconds": seconds,
        "ok": ok,
        "statuses": {"4xx": c4, "5xx": c5, "other": other},
        "first_error": socket_errors.group(1).strip() if socket_errors else None,
        "rps": ok / seconds,
        "latency_ms": latency,
        "client_cpu": client_cpu / wall,
        "server_cpu": server_cpu / wall,
        "server_cpu_ms_per_request": server_cpu * 1000 / max(1, ok + c4 + c5 + other),
    }


async def httpx_throughput(
    server: Server, token: Token, prefix: str, args: argparse.Namespace
) -> dict[str, Any]:
    """args.concurrency async httpx clients PUTting distinct new keys for args.duration s."""
    ok = 0
    statuses: Counter[str] = Counter()
    first_error: list[str] = []
    times: list[float] = []

    async def worker(number: int, deadline: float) -> None:
        """PUT new keys over one keep-alive connection until deadline."""
        nonlocal ok
        async with api_client(server.base_url, token) as client:
            for n in itertools.count():
                if time.perf_counter() >= deadline:
                    return
                body = memory_body(f"{prefix}-c{number}-{n}", f"Bench httpx {prefix} {n} {FILLER}")
                start = time.perf_counter()
                response = await client.put(f"{API}/memories", json=body)
                times.append((time.perf_counter() - start) * 1000)
                if response.status_code in (200, 201):
                    ok += 1
                    continue
                statuses[f"{response.status_code // 100}xx"] += 1
                if not first_error:
                    first_error.append(f"{response.status_code} {response.text[:200]}")

    cpu_before, server_before = time.process_time(), server.cpu_seconds()
    start = time.perf_counter()
    deadline = start + args.duration
    await asyncio.gather(*(worker(number, deadline) for number in range(args.concurrency)))
    wall = time.perf_counter() - start
    server_cpu = server.cpu_seconds() - server_before
    return {
        "client": "httpx",
        "seconds": wall,
        "ok": ok,
        "statuses": dict(statuses),
        "first_error": first_error[0] if first_error else None,
        "rps": ok / wall,
        "latency_ms": client_latency(times),
        "client_cpu": (time.process_time() - cpu_before) / wall,
        "server_cpu": server_cpu / wall,
        "server_cpu_ms_per_request": server_cpu * 1000 / max(1, len(times)),
    }


async def measure_throughput(
    name: str, server: Server, token: Token, run: str, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Upserts of distinct new keys under args.concurrency keep-alive clients: wrk if
    installed, then httpx."""
    results = []
    if WRK.exists():
        wrk = await asyncio.to_thread(wrk_throughput, server, token, f"{run}-wrk", args)
        results.append(wrk)
    else:
        print(f"  ({WRK} is not installed: httpx only)", flush=True)
    results.append(await httpx_throughput(server, token, f"{run}-httpx", args))
    for result in results:
        result["target_rps"] = UPSERT_RPS[name]
        print("  " + throughput_line(result), flush=True)
    return results


# --- one database ------------------------------------------------------------------------


async def wait_for_vectors(raw: Raw, user_id: int, timeout: float = 900.0) -> None:
    """Let the app's background embedder give the user's queued memories (a previous
    run's writes, say) their vectors before timing: the figures are of the steady state,
    not of requests sharing the two cores with the model."""
    started = time.perf_counter()
    waiting = "SELECT count(*) FROM embedding_queue WHERE user_id = ?"
    first = (await raw.fetch(waiting, user_id))[0][0]
    left = first
    while left and time.perf_counter() - started < timeout:
        await asyncio.sleep(1.0)
        left = (await raw.fetch(waiting, user_id))[0][0]
    if first:
        print(
            f"  waited {time.perf_counter() - started:.0f} s for the app to embed {first - left}"
            f" of {first} queued memories of the user ({left} left)",
            flush=True,
        )


async def run_api(
    name: str, raw: Raw, server: Server, token: Token, args: argparse.Namespace
) -> dict[str, Any]:
    """Choose the parameters, time every request beside its floor, then throughput."""
    load_before = os.getloadavg()[0]
    run = uuid.uuid4().hex[:8]
    try:
        params: Params = await choose_params(raw, 1)
        await wait_for_vectors(raw, params.user_id)
        floor = Floor(raw, params.user_id, token)
        keys = await recall_keys(raw, params.user_id, args.warmup + args.runs)
        print(
            f"{name}: {params.rows:,} memories; {HEAVY_USER} (token {token.id}), search word "
            f"{params.word!r} ({params.word_share:.1%} of rows), run {run}; "
            f"server {server.base_url}",
            flush=True,
        )
        async with api_client(server.base_url, token) as client:
            recall = recall_pair(client, floor, keys)
            search = await search_pair(client, floor, params.word)
            question = await search_pair(client, floor, QUESTION)
            upserts = upsert_pairs(client, floor, run)
            groups = [[recall], [search, question], upserts]
            for group in groups:
                await measure(group, runs=args.runs, warmup=args.warmup)
                for pair in group:
                    print("  " + " | ".join(pair_cells(pair)), flush=True)
            check_recall(recall)
        throughput = await measure_throughput(name, server, token, run, args)
    finally:
        await raw.close()
    problems = server.log_problems()
    if problems:
        print(f"  WARNING the server logged {len(problems)} error lines, e.g. {problems[0]}")
    pairs = [*upserts, recall, search, question]
    return {
        "db": name,
        "rows": params.rows,
        "load_average": [load_before, os.getloadavg()[0]],
        "user": HEAVY_USER,
        "word": params.word,
        "word_share": params.word_share,
        "run": run,
        "requests": [pair_json(pair) for pair in pairs],
        "throughput": throughput,
        "server_log_errors": problems[:20],
    }


# --- report ------------------------------------------------------------------------------


def pair_cells(pair: Pair) -> list[str]:
    """request, what, API median and p95, floor median and p95, ratio, target, result,
    check."""
    p95, floor = pair.api_side.p95, pair.floor_side.p95
    ratio = f"{p95 / floor:.1f}x" if p95 is not None and floor else "-"
    target = "-" if pair.target_ms is None else f"< {pair.target_ms:.0f}"
    if pair.target_ms is None:
        verdict = "-"
    elif pair.api_side.error is None and p95 is not None and p95 < pair.target_ms:
        verdict = "PASS"
    else:
        verdict = "FAIL"
    return [
        pair.request,
        pair.what,
        *pair.api_side.cells(),
        *pair.floor_side.cells(),
        ratio,
        target,
        verdict,
        pair.check,
    ]


def pair_json(pair: Pair) -> dict[str, Any]:
    """One request's numbers for --json."""
    return {
        "request": pair.request,
        "what": pair.what,
        "cells": pair_cells(pair),
        "target_ms": pair.target_ms,
        "check": pair.check,
        **{
            name: {
                "median_ms": side.median,
                "p95_ms": side.p95,
                "error": side.error,
                "times_ms": side.times_ms,
            }
            for name, side in (("api", pair.api_side), ("floor", pair.floor_side))
        },
    }


def throughput_line(result: dict[str, Any]) -> str:
    """One throughput run as a sentence, with PASS/FAIL against the target."""
    target = result["target_rps"]
    verdict = "PASS" if result["rps"] >= target else "FAIL"
    latency = ", ".join(f"{k} {v:.1f} ms" for k, v in result["latency_ms"].items())
    others = ", ".join(f"{n:,} x {status}" for status, n in result["statuses"].items() if n)
    error = f"; first error: {result['first_error']}" if result["first_error"] else ""
    return (
        f"PUT upserts of new keys, {result['client']}: {result['rps']:.0f} requests/s "
        f"({result['ok']:,} x 200/201{', ' + others if others else ''} in "
        f"{result['seconds']:.1f} s; {latency}{error}); server CPU {result['server_cpu']:.0%} "
        f"of a core ({result['server_cpu_ms_per_request']:.2f} ms a request), client CPU "
        f"{result['client_cpu']:.0%}; target >= {target:.0f}/s: {verdict}"
    )


def print_report(results: list[dict[str, Any]]) -> None:
    """A Markdown table per database, then its throughput lines."""
    for result in results:
        before, after = result["load_average"]
        print(f"\n### {result['db']} ({result['rows']:,} memories)\n")
        print(
            f"1-minute load average {before:.1f} before, {after:.1f} after; token of "
            f"{result['user']}; search word {result['word']!r} "
            f"({result['word_share']:.1%} of rows)\n"
        )
        print(
            "| request | what | median ms | p95 ms | raw-SQL floor median ms "
            "| floor p95 ms | p95 / floor | target p95 ms | result | checked |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|---|---|")
        for request in result["requests"]:
            print("| " + " | ".join(request["cells"]) + " |")
        print(
            "\nFloors: an upsert (INSERT ... ON CONFLICT DO UPDATE RETURNING) and its audit"
            " event in one transaction; recall's UPDATE ... RETURNING that counts the access;"
            " search's ranking by hand, then the UPDATE ... RETURNING that counts the"
            " access to its results.\n"
        )
        for run in result["throughput"]:
            print(f"- {throughput_line(run)}")


# --- running -----------------------------------------------------------------------------


def with_token_and_server(
    url: str,
    raw_factory: Callable[[], Awaitable[Raw]],
    args: argparse.Namespace,
    log_dir: Path,
    run: Callable[[Raw, Server, Token], Awaitable[dict[str, Any]]],
) -> dict[str, Any]:
    """Create a token of the heavy user, start the server on url's database, run (with the
    floor's driver connected, in one event loop), then revoke the token."""
    secret = secrets.token_urlsafe(32)
    env = server_env(url, secret)
    token = create_token(env)
    try:
        with running_server(url, secret, args.port or free_port(), log_dir) as server:

            async def go() -> dict[str, Any]:
                return await run(await raw_factory(), server, token)

            return asyncio.run(go())
    finally:
        revoke_token(env, token)


def bench_database(
    name: str,
    url: str,
    raw_factory: Callable[[], Awaitable[Raw]],
    args: argparse.Namespace,
    log_dir: Path,
) -> dict[str, Any]:
    """Time everything on url's database (with_token_and_server)."""

    async def run(raw: Raw, server: Server, token: Token) -> dict[str, Any]:
        return await run_api(name, raw, server, token, args)

    return with_token_and_server(url, raw_factory, args, log_dir, run)


def main() -> None:
    """The agent API over HTTP."""
    run_main(
        __doc__,
        "api",
        bench_database,
        print_report,
        lambda args: {"runs": args.runs, "warmup": args.warmup, "duration": args.duration},
    )


if __name__ == "__main__":
    main()
