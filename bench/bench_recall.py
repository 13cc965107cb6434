#!/usr/bin/env python3
"""Recall on LoCoMo: does search find the conversation turns that answer a question?

LoCoMo (Maharana et al., ACL 2024; CC BY-NC 4.0) holds long two-person conversations
in sessions, and questions whose `evidence` names the turns that hold the answer. The
development split lies in ../shared/data/locomo-dev (never copied into this repository).

For each database it loads, as a user would, one user per conversation (`locomo-ID`)
and one memory per turn: namespace `session-N`, key the turn's dia_id, content
`Speaker: text` (plus ` [shares <blip_caption>]` for a shared picture), created_at and
updated_at the session's date. `memory-admin import`, then `memory-admin embed`, then
an API token per user; the app runs under uvicorn (one worker). Every question of
categories 1-4 (1 multi-hop, 2 temporal, 3 open-domain, 4 single-hop) with evidence goes
to `POST /api/v1/search {"query": question, "limit": 10}` as its user, twice (each
search counts an access, and access is a ranking term: pass 2 shows whether it drifts).

It prints recall@5 and recall@10 (the share of a question's evidence turns in the top
k, averaged over questions) and hit@5 / hit@10 (any evidence turn in the top k),
overall and per category with the question counts, for ours (each pass) and for
baselines computed in the same run on the same turns: BM25 (the `bm25s` package, English
stop words, without and with the Snowball English stemmer of PyStemmer), the embedding
model alone (cosine of webapp.embeddings vectors), and reciprocal-rank fusion (k = 60)
of stemmed BM25 and the embedding. And the search latency through HTTP, p50 and p95.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/bench_recall.py                     # SQLite and PostgreSQL
    .venv/bin/python bench/bench_recall.py --only sqlite --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DEFAULT_PG, REPO  # noqa: E402
from harness import free_port, memory_admin, pg_admin, running_server, server_env  # noqa: E402

CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
DATA = REPO.parent / "shared" / "data" / "locomo-dev"
LIMIT = 10
RRF_K = 60
_SESSION = re.compile(r"session_(\d+)")
_EVIDENCE = re.compile(r"D:?(\d+):(\d+)")


@dataclass
class Conversation:
    """One LoCoMo file: its user, its turns (dia_id -> content) and its questions."""

    user: str
    turns: dict[str, str]
    rows: list[dict[str, Any]]
    questions: list[tuple[str, int, set[str]]]


def session_time(text: str) -> str:
    """'1:56 pm on 8 May, 2023' as ISO-8601 UTC."""
    moment = datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def evidence_ids(raw: Sequence[str], known: set[str]) -> set[str]:
    """The dia_ids a question names; a few entries join several ('D8:6; D9:17') or slip
    ('D:11:26')."""
    found = set()
    for entry in raw:
        for session, turn in _EVIDENCE.findall(entry):
            dia_id = f"D{session}:{turn}"
            if dia_id in known:
                found.add(dia_id)
    return found


def load_conversation(path: Path) -> Conversation:
    """A LoCoMo file as memories (import rows) and questions (text, category, evidence)."""
    data = json.loads(path.read_text())
    conversation = data.get("conversation", data)
    user = f"locomo-{path.stem}"
    turns: dict[str, str] = {}
    rows = []
    for name, value in conversation.items():
        match = _SESSION.fullmatch(name)
        if not match or not isinstance(value, list):
            continue
        when = session_time(conversation[f"{name}_date_time"])
        for turn in value:
            content = f"{turn['speaker']}: {turn['text']}"
            if turn.get("blip_caption"):
                content += f" [shares {turn['blip_caption']}]"
            turns[turn["dia_id"]] = content
            rows.append(
                {
                    "user": user,
                    "namespace": f"session-{match.group(1)}",
                    "key": turn["dia_id"],
                    "content": content,
                    "created_at": when,
                    "updated_at": when,
                }
            )
    questions = []
    for qa in data["qa"]:
        category = qa.get("category")
        evidence = evidence_ids(qa.get("evidence") or [], set(turns))
        if category in CATEGORIES and evidence:
            questions.append((qa["question"], int(category), evidence))
    return Conversation(user, turns, rows, questions)


@dataclass
class Scores:
    """Per question: category, recall@5, recall@10, hit@5, hit@10."""

    rows: list[tuple[int, float, float, float, float]] = field(default_factory=list)

    def add(self, category: int, ranked: Sequence[str], evidence: set[str]) -> None:
        at5, at10 = set(ranked[:5]) & evidence, set(ranked[:10]) & evidence
        self.rows.append(
            (category, len(at5) / len(evidence), len(at10) / len(evidence), bool(at5), bool(at10))
        )

    def summary(self) -> dict[str, Any]:
        def of(rows: list[tuple[int, float, float, float, float]]) -> dict[str, float]:
            return {
                "n": len(rows),
                **{
                    name: round(statistics.fmean(row[i] for row in rows), 4) if rows else 0.0
                    for i, name in enumerate(("recall@5", "recall@10", "hit@5", "hit@10"), 1)
                },
            }

        by_category = {
            CATEGORIES[c]: of([row for row in self.rows if row[0] == c]) for c in CATEGORIES
        }
        return {"all": of(self.rows), **by_category}


def baselines(conversations: list[Conversation]) -> dict[str, Scores]:
    """BM25 without and with stemming, the embedding alone, and their RRF; per user."""
    import bm25s
    import Stemmer

    from webapp.embeddings import get_embedder

    stemmer = Stemmer.Stemmer("english")
    embedder = get_embedder()
    scores = {name: Scores() for name in ("bm25", "bm25 stemmed", "embedding", "rrf")}
    for conversation in conversations:
        ids = list(conversation.turns)
        texts = [conversation.turns[i] for i in ids]
        indexes = {}
        for name, stem in (("bm25", None), ("bm25 stemmed", stemmer)):
            index = bm25s.BM25()
            tokens = bm25s.tokenize(texts, stopwords="en", stemmer=stem, show_progress=False)
            index.index(tokens, show_progress=False)
            indexes[name] = (index, stem)
        vectors = embedder.embed(texts)
        queries = embedder.embed([question for question, _, _ in conversation.questions])
        for (question, category, evidence), query in zip(
            conversation.questions, queries, strict=True
        ):
            ranked: dict[str, list[str]] = {}
            for name, (index, stem) in indexes.items():
                tokens = bm25s.tokenize(
                    [question], stopwords="en", stemmer=stem, show_progress=False
                )
                ranked[name] = _bm25_ranking(index, tokens, ids)
            order = np.argsort(-(vectors @ query))[:100]
            ranked["embedding"] = [ids[i] for i in order]
            ranked["rrf"] = rrf(ranked["bm25 stemmed"][:100], ranked["embedding"])
            for name, ranking in ranked.items():
                scores[name].add(category, ranking, evidence)
    return scores


def _bm25_ranking(index: Any, tokens: Any, ids: list[str]) -> list[str]:
    """The turns with a positive BM25 score, best first (none when no word is known)."""
    if not any(len(row) for row in tokens.ids):
        return []
    documents, values = index.retrieve(tokens, k=min(100, len(ids)), show_progress=False)
    return [ids[d] for d, v in zip(documents[0], values[0], strict=True) if v > 0]


def rrf(*rankings: Sequence[str], k: int = RRF_K) -> list[str]:
    """Reciprocal-rank fusion: sum of 1 / (k + rank) over the rankings, best first."""
    total: dict[str, float] = defaultdict(float)
    for ranking in rankings:
        for rank, item in enumerate(ranking, 1):
            total[item] += 1.0 / (k + rank)
    return sorted(total, key=lambda item: -total[item])


def prepare(url: str, conversations: list[Conversation], work: Path) -> dict[str, str]:
    """Migrate, import the turns, embed them, and make a token per user: user -> token."""
    env = server_env(url, "bench-recall-secret-key")
    memory_admin(env, "migrate")
    data = work / "locomo.jsonl"
    with data.open("w") as out:
        for conversation in conversations:
            for row in conversation.rows:
                out.write(json.dumps(row) + "\n")
    print("  " + memory_admin(env, "import", str(data)), flush=True)
    print("  " + memory_admin(env, "embed"), flush=True)
    return {
        c.user: memory_admin(env, "token", "create", c.user, "--name", "recall").splitlines()[-1]
        for c in conversations
    }


async def ask_all(
    base_url: str, conversations: list[Conversation], tokens: dict[str, str], passes: int
) -> tuple[list[Scores], list[float]]:
    """Every question through POST /api/v1/search, `passes` times; scores and latencies."""
    results = [Scores() for _ in range(passes)]
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        for run in range(passes):
            for conversation in conversations:
                headers = {"Authorization": f"Bearer {tokens[conversation.user]}"}
                for question, category, evidence in conversation.questions:
                    started = time.perf_counter()
                    response = await client.post(
                        "/api/v1/search",
                        json={"query": question, "limit": LIMIT},
                        headers=headers,
                    )
                    latencies.append((time.perf_counter() - started) * 1000)
                    response.raise_for_status()
                    ranked = [item["key"] for item in response.json()["items"]]
                    results[run].add(category, ranked, evidence)
    return results, latencies


def bench_one(name: str, url: str, conversations: list[Conversation], passes: int) -> dict:
    """Load the database at url, ask every question, measure; the results."""
    with tempfile.TemporaryDirectory(prefix="ma-bench-recall-") as folder:
        work = Path(folder)
        print(f"{name}: loading {sum(len(c.rows) for c in conversations)} turns ...", flush=True)
        tokens = prepare(url, conversations, work)
        with running_server(url, "bench-recall-secret-key", free_port(), work) as server:
            passes_scores, latencies = asyncio.run(
                ask_all(server.base_url, conversations, tokens, passes)
            )
            problems = server.log_problems()
    ordered = sorted(latencies)
    return {
        "database": name,
        "passes": [scores.summary() for scores in passes_scores],
        "latency_ms": {
            "p50": round(statistics.median(ordered), 1),
            "p95": round(ordered[int(0.95 * (len(ordered) - 1))], 1),
            "requests": len(ordered),
        },
        "server_errors": problems,
    }


def table(rows: dict[str, dict[str, Any]]) -> str:
    """A Markdown table: each system's recall and hits, overall and per category."""
    columns = ["all", *CATEGORIES.values()]
    counts = next(iter(rows.values()))
    head = "| system | " + " | ".join(f"{c} (n={counts[c]['n']})" for c in columns) + " |"
    lines = [head, "|---|" + "---:|" * len(columns)]
    for name, summary in rows.items():
        cells = [
            f"{summary[c]['recall@5']:.3f} / {summary[c]['recall@10']:.3f} / "
            f"{summary[c]['hit@5']:.2f} / {summary[c]['hit@10']:.2f}"
            for c in columns
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["sqlite", "postgresql"], help="one database only")
    parser.add_argument("--data", type=Path, default=DATA, help="the LoCoMo JSON files")
    parser.add_argument("--passes", type=int, default=2, help="times each question is asked")
    parser.add_argument(
        "--postgres-admin-url",
        default=os.environ.get("TEST_POSTGRES_URL", DEFAULT_PG),
        help="the server to create the PostgreSQL database on (default: %(default)s)",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    files = sorted(args.data.glob("*.json"))
    if not files:
        raise SystemExit(f"no LoCoMo files in {args.data}")
    conversations = [load_conversation(path) for path in files]
    print(
        f"{len(conversations)} conversations, {sum(len(c.turns) for c in conversations)} turns, "
        f"{sum(len(c.questions) for c in conversations)} questions of categories 1-4",
        flush=True,
    )
    started = time.perf_counter()
    base = {name: s.summary() for name, s in baselines(conversations).items()}
    print(f"baselines computed in {time.perf_counter() - started:.0f} s", flush=True)

    results = []
    for name in ("sqlite", "postgresql"):
        if args.only and args.only != name:
            continue
        results.append(_run_database(name, args, conversations))
    report: dict[str, Any] = {"baselines": base, "databases": results}
    print("\nrecall@5 / recall@10 / hit@5 / hit@10, n = questions\n")
    for result in results:
        rows = {
            f"ours ({result['database']}, pass {i})": summary
            for i, summary in enumerate(result["passes"], 1)
        }
        rows.update({f"baseline: {name}": summary for name, summary in base.items()})
        print(f"### {result['database']}\n\n{table(rows)}\n")
        latency = result["latency_ms"]
        print(
            f"search latency through HTTP: p50 {latency['p50']} ms, p95 {latency['p95']} ms "
            f"({latency['requests']} requests); server errors: {len(result['server_errors'])}\n"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


def _run_database(name: str, args: argparse.Namespace, conversations: list[Conversation]) -> dict:
    if name == "sqlite":
        with tempfile.TemporaryDirectory(prefix="ma-recall-db-") as folder:
            return bench_one(
                name, f"sqlite+aiosqlite:///{folder}/recall.db", conversations, args.passes
            )
    database = f"ma_bench_recall_{uuid.uuid4().hex[:8]}"
    admin: str = args.postgres_admin_url
    url = admin.rsplit("/", 1)[0] + "/" + database
    drop: Callable[[], Any] = lambda: asyncio.run(  # noqa: E731
        pg_admin(admin, f'DROP DATABASE "{database}" WITH (FORCE)')
    )
    asyncio.run(pg_admin(admin, f'CREATE DATABASE "{database}"'))
    try:
        return bench_one(name, url, conversations, args.passes)
    finally:
        drop()


if __name__ == "__main__":
    main()
