#!/usr/bin/env python3
"""Latency of the service layer's read and write queries, against a raw-SQL floor.

For each database (a SQLite file, a PostgreSQL database) it gets a loaded database (one
given with --sqlite-path / --postgres-url, or a fresh one filled with `memory-admin
migrate` and `memory-admin import`), then times seventeen operations as the app runs
them (webapp.services over webapp.db's engine, as an admin, 50 rows a page), in this order:

    Q1 active memories, newest first        F1 all active, oldest first (sort=created_at)
    Q2 user-00001 by importance             F2 most accessed first (sort=-access_count)
    Q3 user-00001's busiest namespace       F3 last accessed first (sort=-last_accessed_at)
    Q4 full text, a word in ~2% of rows     F4 min_importance=0.9
    Q5 one tag on ~2% of rows               F5 expiring_within=7 (days)
    Q6 Q1 at page 200 (keyset cursor)       F6 namespace=PREFIX/ (Q3's namespace's first part)
    Q7 user-00001's Trash                   Q8 one memory by id
    D1 the dashboard: counts per state, distinct namespaces, its three lists of 10
    U1 the users list with each user's memory counts per state
    W1 an importance edit with its event (last: it moves a row to the top)

A browse run is the whole service call (page, capped count, cursors). Each is set
against the best hand-written SQL for the same rows through the raw driver (sqlite3,
asyncpg), with no count, measured in the same run, alternating with the service call
(D1's floor: the counts in one statement and the three lists; U1's: one statement
counting each listed user's memories per state). It prints median and p95 (nearest
rank) in ms per query, and whether every p95 but D1's and U1's (no target) is under
20 ms. Not a test: numbers vary with the machine's load. W1 writes to the database, so
a reused database changes a little.

    python bench/bench_queries.py --rows 1000000 --keep       # load once, keep the databases
    python bench/bench_queries.py --db sqlite --sqlite-path /tmp/ma-bench-queries-x/memories.db
    python bench/bench_queries.py --rows 20000 --runs 10 --json queries.json
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import itertools
import secrets
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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
    choose_params,
    describe,
    failing,
    timed,
)
from harness import add_dataset_options, dataset, postgres_database, sqlite_database

from webapp.db import Database, create_engine
from webapp.models import BrowseQuery, MemoryUpdate
from webapp.services.browse import browse
from webapp.services.cursors import CursorSigner
from webapp.services.memories import get_memory, update_memory
from webapp.services.principal import Principal
from webapp.services.stats import EXPIRING_SOON_DAYS, LIST_SIZE, dashboard
from webapp.services.users import list_users
from webapp.settings import Settings

PAGE = 50
DEPTH = 199  # cursors followed to reach page 200
P95_BUDGET_MS = 20.0
DEPTH_RATIO = 1.2
MIN_IMPORTANCE = 0.9  # F4
EXPIRING_WITHIN_DAYS = 7  # F5
USERS_LIMIT: int = inspect.signature(list_users).parameters["limit"].default
"""How many users the /users page lists (list_users's default, which the page uses)."""


# --- raw drivers -------------------------------------------------------------------------


# --- the floor's SQL ---------------------------------------------------------------------


def floor_sql(dialect: str) -> dict[str, str]:
    """The best hand-written SQL for each query on dialect, with ? placeholders."""
    no, yes = ("0", "1") if dialect == "sqlite" else ("false", "true")
    as_json = "" if dialect == "sqlite" else "::jsonb"
    # `IS`, not `=`: only then do both planners see that Trash's partial index applies.
    trash = f"is_deleted IS {yes}"

    def active(prefix: str = "") -> str:
        return (
            f"{prefix}is_deleted = {no} AND ({prefix}expires_at IS NULL OR {prefix}expires_at > ?)"
        )

    memories = "SELECT * FROM long_term_memory WHERE"
    newest = f"ORDER BY updated_at DESC, id DESC LIMIT {PAGE}"
    # Not deleted and expiring between ? and ? (active: `expires_at > now` excludes NULL);
    # `IS` for a partial index on the rows that are not deleted, as for Trash's.
    kept = f"is_deleted IS {no}"
    expiring = f"{kept} AND expires_at > ? AND expires_at <= ?"
    # NULL sorts smallest in SQLite, so a plain DESC already puts the never-accessed last.
    nulls_last = "" if dialect == "sqlite" else " NULLS LAST"

    def count(*where: str) -> str:
        """A scalar subquery counting the memories that match every condition of where."""
        conditions = f" WHERE {' AND '.join(where)}" if where else ""
        return f"(SELECT count(*) FROM long_term_memory{conditions})"

    # All rows, the deleted and the expired, each counted on its own so that each can be
    # answered from an index (user_id or any other, Trash's partial index, an expiry
    # index); active is what remains.
    expired = f"{kept} AND expires_at <= ?"
    mine = "user_id = users.id"

    if dialect == "sqlite":
        # The word and the tag are common: walk the updated_at index and test each row
        # (`id + 0` keeps SQLite from starting at the match list and sorting it all).
        text = (
            f"{memories} id + 0 IN (SELECT rowid FROM long_term_memory_fts"
            f" WHERE long_term_memory_fts MATCH ?) AND {active()} {newest}"
        )
        tag = (
            f"{memories} id + 0 IN (SELECT memory_id FROM memory_tag WHERE tag = ?)"
            f" AND {active()} {newest}"
        )
        # SQLite's statistics do not say that importance >= 0.9 is rare (~0.006% of
        # rows): `+updated_at` makes it find them by the importance index and sort them,
        # instead of walking the updated_at index through every row.
        important = (
            f"{memories} importance >= {MIN_IMPORTANCE} AND {active()}"
            f" ORDER BY +updated_at DESC, id DESC LIMIT {PAGE}"
        )
        # The other way round for a common prefix (F6's is the heaviest user's busiest
        # namespace's, ~30% of rows): walk the updated_at index and test each row rather
        # than collect every match from the namespace index and sort them.
        in_prefix = "(+namespace = ? OR (+namespace >= ? AND +namespace < ?))"
    else:
        words = f"to_tsquery('{SEARCH_LANGUAGE}', ?)"
        text = f"{memories} search_vector @@ {words} AND {active()} {newest}"
        tag = f"{memories} tags @> ?::jsonb AND {active()} {newest}"
        # PostgreSQL takes importance >= 0.9 for 0.3% of rows, not 0.006%, and walks the
        # updated_at index past a million rows (1 s): collect the matches first instead.
        important = (
            f"WITH matches AS MATERIALIZED (SELECT * FROM long_term_memory WHERE importance"
            f" >= {MIN_IMPORTANCE} AND {active()}) SELECT * FROM matches {newest}"
        )
        in_prefix = "(namespace = ? OR (namespace >= ? AND namespace < ?))"
    return {
        "Q1": f"{memories} {active()} {newest}",
        "Q2": f"{memories} user_id = ? AND {active()} ORDER BY importance DESC, id DESC"
        f" LIMIT {PAGE}",
        "Q3": f"{memories} user_id = ? AND namespace = ? AND {active()} {newest}",
        "Q4": text,
        "Q5": tag,
        "Q6": f"{memories} {active()} AND (updated_at, id) < (?, ?) {newest}",
        "Q7": f"{memories} user_id = ? AND {trash} {newest}",
        "Q8": f"{memories} id = ? AND is_deleted = {no}",
        "F1": f"{memories} {active()} ORDER BY created_at, id LIMIT {PAGE}",
        "F2": f"{memories} {active()} ORDER BY access_count DESC, id DESC LIMIT {PAGE}",
        "F3": f"{memories} {active()} ORDER BY last_accessed_at DESC{nulls_last}, id DESC"
        f" LIMIT {PAGE}",
        "F4": important,
        "F5": f"{memories} {expiring} {newest}"
        if dialect == "sqlite"
        # A prepared statement's generic plan walks the updated_at index (46 ms).
        else f"WITH matches AS MATERIALIZED ({memories} {expiring}) SELECT * FROM matches {newest}",
        "F6": f"{memories} {in_prefix} AND {active()} {newest}",
        # The distinct namespaces as a subquery: SQLite reads them off the namespace
        # index, PostgreSQL hashes them instead of sorting them.
        "D1 counts": f"SELECT {count()} AS n_total, {count(trash)} AS n_deleted,"
        f" {count(expired)} AS n_expired, (SELECT count(*) FROM"
        " (SELECT DISTINCT namespace FROM long_term_memory) AS listed) AS n_namespaces",
        "D1 expiring": f"{memories} {expiring} ORDER BY expires_at, id LIMIT {LIST_SIZE}",
        "D1 recent": "SELECT * FROM long_term_memory ORDER BY updated_at DESC, id DESC"
        f" LIMIT {LIST_SIZE}",
        "D1 accessed": f"{memories} access_count > 0 AND {active()}"
        f" ORDER BY access_count DESC, id DESC LIMIT {LIST_SIZE}",
        # The same counts per user, for the first users by name: index seeks per user
        # (the counts are evaluated for the rows the LIMIT keeps only).
        "U1": f"SELECT users.*, {count(mine)} AS n_total, {count(mine, trash)} AS n_deleted,"
        f" {count(mine, expired)} AS n_expired FROM users ORDER BY username"
        f" LIMIT {USERS_LIMIT}",
        "position": f"SELECT updated_at, id FROM long_term_memory WHERE {active()}"
        " ORDER BY updated_at DESC, id DESC LIMIT 1 OFFSET ?",
        "W1 update": "UPDATE long_term_memory SET importance = ?, version = version + 1,"
        " updated_at = ? WHERE id = ? AND version = ?",
        "W1 event": "INSERT INTO memory_event (memory_id, user_id, actor, action, changes,"
        f" created_at) VALUES (?, ?, 'operator:bench', 'update', ?{as_json}, ?)",
    }


# --- measuring ---------------------------------------------------------------------------


@dataclass
class Case:
    """One query: the service call and its floor, each returning the ids it fetched."""

    name: str
    label: str
    ours: Fetch
    floor: Fetch
    check_ids: bool = True
    judged: bool = True  # held to P95_BUDGET_MS (D1 and U1 have no target)
    ours_side: Side = field(default_factory=Side)
    floor_side: Side = field(default_factory=Side)
    ids_match: bool | None = None


async def measure(case: Case, *, runs: int, warmup: int) -> None:
    """Warm up, then time ours and the floor alternately, runs times each."""
    for i in range(warmup + runs):
        await timed(case.ours, case.ours_side, record=i >= warmup)
        await timed(case.floor, case.floor_side, record=i >= warmup)
    ours, floor = case.ours_side.ids, case.floor_side.ids
    if case.check_ids and ours is not None and floor is not None:
        case.ids_match = ours == floor
        if not case.ids_match:
            print(
                f"  WARNING {case.name}: service and floor fetched different rows "
                f"(first ids {ours[:3]} vs {floor[:3]})",
                flush=True,
            )


# --- choosing the parameters -------------------------------------------------------------


# --- the queries -------------------------------------------------------------------------


class Bench:
    """The service layer and the raw driver on one database, and the cases to time."""

    def __init__(self, db: Database, raw: Raw, params: Params) -> None:
        self.db = db
        self.raw = raw
        self.p = params
        self.sql = floor_sql(raw.dialect)
        self.principal = Principal.operator("bench")
        self.signer = CursorSigner(secrets.token_urlsafe(32))

    def browse_case(
        self, name: str, label: str, query: dict[str, Any], keys: Callable[[Any], tuple[Any, ...]]
    ) -> Case:
        """browse() with query, against the floor's SQL `name` with the parameters keys(now)."""

        async def ours() -> list[int]:
            page = await browse(
                self.db,
                principal=self.principal,
                query=BrowseQuery(limit=PAGE, **query),
                signer=self.signer,
            )
            case.label = f"{label} ({page.count:,}{'+' if page.count_capped else ''} rows)"
            return [m.id for m in page.items if m.id is not None]

        async def floor() -> list[int]:
            rows = await self.raw.fetch(self.sql[name], *keys(self.raw.now()))
            return [row["id"] for row in rows]

        case = Case(name, label, ours, floor)
        return case

    async def deep_case(self) -> Case:
        """Q6: the page DEPTH cursors deep, its cursor found by paging through first."""
        cursor: str | None = None
        depth = 0
        try:
            for _ in range(DEPTH):
                page = await browse(
                    self.db,
                    principal=self.principal,
                    query=BrowseQuery(limit=PAGE, cursor=cursor),
                    signer=self.signer,
                )
                if page.next_cursor is None:
                    break
                cursor, depth = page.next_cursor, depth + 1
            if cursor is None:
                raise BenchError("fewer than two pages of active memories")
            position = await self.raw.fetch(self.sql["position"], self.raw.now(), depth * PAGE - 1)
        except Exception as exc:
            return Case("Q6", "Q6 Q1 deep", failing(exc), failing(exc))
        updated_at, last_id = position[0]["updated_at"], position[0]["id"]
        return self.browse_case(
            "Q6",
            f"Q6 Q1 at page {depth + 1}",
            {"cursor": cursor},
            lambda now: (now, updated_at, last_id),
        )

    def get_case(self) -> Case:
        """Q8: get_memory for a different existing id each run (the same ids for the floor)."""
        ours_ids, floor_ids = itertools.cycle(self.p.get_ids), itertools.cycle(self.p.get_ids)

        async def ours() -> list[int]:
            memory = await get_memory(self.db, principal=self.principal, memory_id=next(ours_ids))
            return [memory.id] if memory.id is not None else []

        async def floor() -> list[int]:
            rows = await self.raw.fetch(self.sql["Q8"], next(floor_ids))
            return [row["id"] for row in rows]

        return Case("Q8", "Q8 get by id", ours, floor)

    def dashboard_case(self) -> Case:
        """D1: the dashboard as an admin sees it; both sides give the four counts, then the
        ids of its three lists (expiring soon, recently changed, most accessed)."""

        async def ours() -> list[int]:
            stats = await dashboard(self.db, principal=self.principal)
            listed = [*stats.expiring_soon, *stats.recently_changed, *stats.most_accessed]
            counts = [stats.active, stats.expired, stats.deleted, stats.namespaces]
            return counts + [m.id for m in listed if m.id is not None]

        async def floor() -> list[int]:
            moment = datetime.now(UTC)
            now = self.raw.stamp(moment)
            soon = self.raw.stamp(moment + timedelta(days=EXPIRING_SOON_DAYS))
            n = (await self.raw.fetch(self.sql["D1 counts"], now))[0]
            rows = [
                *await self.raw.fetch(self.sql["D1 expiring"], now, soon),
                *await self.raw.fetch(self.sql["D1 recent"]),
                *await self.raw.fetch(self.sql["D1 accessed"], now),
            ]
            active = n["n_total"] - n["n_deleted"] - n["n_expired"]
            counts = [active, n["n_expired"], n["n_deleted"], n["n_namespaces"]]
            return [*counts, *(row["id"] for row in rows)]

        return Case("D1", "D1 dashboard", ours, floor, judged=False)

    def users_case(self) -> Case:
        """U1: the users list of /users (no search) with each user's counts per state; both
        sides give user id, active, expired, deleted for each user in the list's order."""

        async def ours() -> list[int]:
            summaries = await list_users(self.db)
            case.label = f"U1 users list with counts ({len(summaries):,} users)"
            return [
                value
                for s in summaries
                if s.user.id is not None
                for value in (s.user.id, s.active, s.expired, s.deleted)
            ]

        async def floor() -> list[int]:
            rows = await self.raw.fetch(self.sql["U1"], self.raw.now())
            return [
                value
                for row in rows
                for value in (
                    row["id"],
                    row["n_total"] - row["n_deleted"] - row["n_expired"],
                    row["n_expired"],
                    row["n_deleted"],
                )
            ]

        case = Case("U1", "U1 users list with counts", ours, floor, judged=False)
        return case

    async def write_case(self) -> Case:
        """W1: importance edits alternating between two values, so that every run writes."""
        ours_id, floor_id = self.p.write_ids
        label = "W1 importance edit + event"
        try:
            memory = await get_memory(self.db, principal=self.principal, memory_id=ours_id)
            row = (await self.raw.fetch(self.sql["Q8"], floor_id))[0]
        except Exception as exc:
            return Case("W1", label, failing(exc), failing(exc), check_ids=False)
        ours_version, ours_values = memory.version, alternating(memory.importance)
        floor_version, floor_importance = row["version"], row["importance"]
        floor_values = alternating(floor_importance)

        async def ours() -> list[int]:
            nonlocal ours_version
            changes = MemoryUpdate(importance=next(ours_values), version=ours_version)
            edited = await update_memory(
                self.db, principal=self.principal, memory_id=ours_id, changes=changes
            )
            ours_version = edited.version
            return []

        async def floor() -> list[int]:
            nonlocal floor_version, floor_importance
            new, now = next(floor_values), self.raw.now()
            changes = orjson.dumps({"importance": {"old": floor_importance, "new": new}}).decode()
            updated, _ = await self.raw.write(
                [
                    (self.sql["W1 update"], (new, now, floor_id, floor_version)),
                    (self.sql["W1 event"], (floor_id, row["user_id"], changes, now)),
                ]
            )
            if updated != 1:
                raise RuntimeError(f"memory {floor_id} is no longer at version {floor_version}")
            floor_version, floor_importance = floor_version + 1, new
            return []

        return Case("W1", label, ours, floor, check_ids=False)

    async def cases(self) -> list[Case]:
        """Every query, in the order they run (the write last: it moves rows to the top)."""
        p, sqlite = self.p, self.raw.dialect == "sqlite"
        heavy = {"user": HEAVY_USER}
        text_key = (
            f'{{key content}} : ("{p.word}")' if sqlite else f"('{p.word}':AB)"
        )  # as fulltext.py
        tag_key = p.tag if sqlite else orjson.dumps([p.tag]).decode()
        text = self.browse_case("Q4", f"Q4 q={p.word}", {"q": p.word}, lambda now: (text_key, now))
        if "q" not in BrowseQuery.model_fields:  # pydantic would ignore it silently
            text.ours = failing(RuntimeError("BrowseQuery has no `q` field yet"))
        prefix = namespace_prefix(p.namespace)
        week = timedelta(days=EXPIRING_WITHIN_DAYS)

        def expiring_keys(_: Any) -> tuple[Any, ...]:
            """F5's floor parameters: now and now + EXPIRING_WITHIN_DAYS."""
            moment = datetime.now(UTC)
            return self.raw.stamp(moment), self.raw.stamp(moment + week)

        return [
            self.browse_case("Q1", "Q1 all active, newest", {}, lambda now: (now,)),
            self.browse_case(
                "Q2",
                f"Q2 {HEAVY_USER} by importance",
                {**heavy, "sort": "-importance"},
                lambda now: (p.user_id, now),
            ),
            self.browse_case(
                "Q3",
                f"Q3 {HEAVY_USER} in {p.namespace}",
                {**heavy, "namespace": p.namespace},
                lambda now: (p.user_id, p.namespace, now),
            ),
            text,
            self.browse_case("Q5", f"Q5 tag={p.tag}", {"tag": [p.tag]}, lambda now: (tag_key, now)),
            await self.deep_case(),
            self.browse_case(
                "Q7",
                f"Q7 {HEAVY_USER} Trash",
                {**heavy, "state": "deleted"},
                lambda _: (p.user_id,),
            ),
            self.browse_case(
                "F1", "F1 all active, oldest first", {"sort": "created_at"}, lambda now: (now,)
            ),
            self.browse_case(
                "F2", "F2 most accessed first", {"sort": "-access_count"}, lambda now: (now,)
            ),
            self.browse_case(
                "F3",
                "F3 last accessed first",
                {"sort": "-last_accessed_at"},
                lambda now: (now,),
            ),
            self.browse_case(
                "F4",
                f"F4 importance >= {MIN_IMPORTANCE}",
                {"min_importance": MIN_IMPORTANCE},
                lambda now: (now,),
            ),
            self.browse_case(
                "F5",
                f"F5 expiring within {EXPIRING_WITHIN_DAYS} days",
                {"expiring_within": EXPIRING_WITHIN_DAYS},
                expiring_keys,
            ),
            self.browse_case(
                "F6",
                f"F6 namespace {prefix}/",
                {"namespace": f"{prefix}/"},
                lambda now: (prefix, f"{prefix}/", f"{prefix}0", now),
            ),
            self.get_case(),
            self.dashboard_case(),
            self.users_case(),
            await self.write_case(),
        ]


def namespace_prefix(namespace: str) -> str:
    """The first segment of a namespace ("projects" for "projects/dynamo"): F6's filter."""
    return namespace.split("/", 1)[0]


def alternating(current: float) -> Iterator[float]:
    """0.25, 0.75, 0.25, ... starting with the one that differs from current."""
    return itertools.cycle((0.25, 0.75) if current != 0.25 else (0.75, 0.25))


async def run_queries(name: str, url: str, raw: Raw, args: argparse.Namespace) -> dict[str, Any]:
    """Choose the parameters, time every case on one database, and return the numbers."""
    settings = Settings(database_url=url, secret_key="bench")
    engine = create_engine(settings)
    try:
        params = await choose_params(raw, args.warmup + args.runs)
        print(
            f"{name}: {params.rows:,} memories; namespace {params.namespace!r}, "
            f"word {params.word!r} (in {params.word_share:.1%} of sampled rows), "
            f"tag {params.tag!r} (on {params.tag_share:.1%})",
            flush=True,
        )
        bench = Bench(Database(engine, search_language=settings.search_language), raw, params)
        cases = await bench.cases()
        for case in cases:
            await measure(case, runs=args.runs, warmup=args.warmup)
            cells = row_cells(case)
            print(f"  {cells[0]} | {' | '.join(cells[1:])}", flush=True)
    finally:
        await raw.close()
        await engine.dispose()
    return {
        "db": name,
        "rows": params.rows,
        "namespace": params.namespace,
        "word": params.word,
        "word_share": params.word_share,
        "tag": params.tag,
        "tag_share": params.tag_share,
        "queries": [case_json(case) for case in cases],
    }


def case_json(case: Case) -> dict[str, Any]:
    """One query's numbers for --json."""
    sides = {"ours": case.ours_side, "floor": case.floor_side}
    return {
        "name": case.name,
        "label": case.label,
        "ids_match": case.ids_match,
        "judged": case.judged,
        "cells": row_cells(case),
        **{
            name: {
                "median_ms": side.median,
                "p95_ms": side.p95,
                "error": side.error,
                "times_ms": side.times_ms,
            }
            for name, side in sides.items()
        },
    }


# --- report ------------------------------------------------------------------------------


def row_cells(case: Case) -> list[str]:
    """query, ours median, ours p95, floor median, floor p95, p95 ratio."""
    ours, floor = case.ours_side.p95, case.floor_side.p95
    ratio = f"{ours / floor:.1f}" if ours is not None and floor else "-"
    return [case.label, *case.ours_side.cells(), *case.floor_side.cells(), ratio]


def p95_of(result: dict[str, Any], name: str) -> float | None:
    """Our p95 for query name in one database's result."""
    for query in result["queries"]:
        if query["name"] == name:
            p95: float | None = query["ours"]["p95_ms"]
            return p95
    return None


def verdicts(result: dict[str, Any]) -> dict[str, Any]:
    """Whether every judged p95 of ours (not D1's, U1's) is under the budget, and whether
    depth costs little."""
    slow = [
        f"{q['name']} failed" if q["ours"]["error"] else f"{q['name']} {q['ours']['p95_ms']:.1f} ms"
        for q in result["queries"]
        if q.get("judged", True) and (q["ours"]["error"] or q["ours"]["p95_ms"] >= P95_BUDGET_MS)
    ]
    q1, q6 = p95_of(result, "Q1"), p95_of(result, "Q6")
    depth_ratio = q6 / q1 if q1 and q6 is not None else None
    return {
        "all_p95_under_budget": not slow,
        "over_budget": slow,
        "q6_over_q1_p95": depth_ratio,
        "q6_within_ratio": depth_ratio is not None and depth_ratio <= DEPTH_RATIO,
    }


def print_report(results: list[dict[str, Any]]) -> None:
    """A Markdown table per database, then the two verdicts."""
    for result in results:
        print(f"\n### {result['db']} ({result['rows']:,} memories)\n")
        print("| query | ours median | ours p95 | floor median | floor p95 | p95 ratio |")
        print("|---|---:|---:|---:|---:|---:|")
        for query in result["queries"]:
            print("| " + " | ".join(query["cells"]) + " |")
    print()
    for result in results:
        v = result["verdict"]
        under = "yes" if v["all_p95_under_budget"] else f"no ({', '.join(v['over_budget'])})"
        ratio = v["q6_over_q1_p95"]
        deep = "unknown (Q1 or Q6 failed)"
        if ratio is not None:
            deep = f"{'yes' if v['q6_within_ratio'] else 'no'} ({ratio:.2f}x)"
        free = [q["name"] for q in result["queries"] if not q.get("judged", True)]
        but = f" (but {', '.join(free)}: no target)" if free else ""
        print(
            f"{result['db']}: every p95{but} under {P95_BUDGET_MS:.0f} ms: {under}; "
            f"Q6 p95 <= {DEPTH_RATIO}x Q1 p95: {deep}"
        )


# --- databases ---------------------------------------------------------------------------


def bench_sqlite(args: argparse.Namespace, data: Callable[[], Path]) -> dict[str, Any]:
    """The given SQLite file, or a fresh one (removed afterwards unless --keep)."""
    with sqlite_database(args, data) as path:
        url = f"sqlite+aiosqlite:///{path.resolve()}"
        return asyncio.run(run_queries("sqlite", url, RawSqlite(path), args))


async def pg_run(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Time the queries on the PostgreSQL database at url."""
    raw = await RawPostgres.connect(url.replace("+asyncpg", ""))
    return await run_queries("postgresql", url, raw, args)


def bench_postgres(args: argparse.Namespace, data: Callable[[], Path]) -> dict[str, Any]:
    """The given PostgreSQL database, or a fresh one (dropped afterwards unless --keep)."""
    with postgres_database(args, data) as url:
        return asyncio.run(pg_run(url, args))


def main() -> None:
    """Parse the options, get the databases, time the queries, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    add_dataset_options(parser)
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the numbers here")
    args = parser.parse_args()
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be at least 1 and --warmup at least 0")

    with tempfile.TemporaryDirectory(prefix="ma-bench-") as tmp:
        data = dataset(args, Path(tmp))
        results = []
        for name, bench in (("sqlite", bench_sqlite), ("postgresql", bench_postgres)):
            if args.db not in (name, "both"):
                continue
            try:
                result = bench(args, data)
            except Exception as exc:  # report it and go on with the other database
                print(f"{name}: {describe(exc)}", file=sys.stderr, flush=True)
                continue
            result["verdict"] = verdicts(result)
            results.append(result)

    print_report(results)
    if args.json is not None:
        meta = {"runs": args.runs, "warmup": args.warmup, "page": PAGE}
        args.json.write_bytes(
            orjson.dumps({**meta, "databases": results}, option=orjson.OPT_INDENT_2)
        )
    if not results:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
