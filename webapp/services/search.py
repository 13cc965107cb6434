"""Ranked search for agents: the memories that best answer a query, with why they rank.

    score = 0.40 * text + 0.40 * semantic + 0.10 * importance + 0.06 * recency
          + 0.04 * access

each component in [0, 1]:

- text: the database's own relevance (SQLite FTS5 bm25, PostgreSQL ts_rank) of the
  query's words, a word in the key counting twice a word in the content, divided by the
  best among the candidates; then read in context (below).
- semantic: the cosine similarity of the query's and the memory's vectors (the local
  embedding model, webapp.embeddings), divided by the best among the candidates; then
  read in context.
- In context: a memory's text and semantic parts each become own + 0.3 * those of its
  best matching neighbour, the memory written just before or just after it in the same
  namespace (by id), and are divided by the best such value among the results, so the
  best scores 1. An agent's memories of one conversation or task explain each other,
  and the answer to a question is often the memory next to the one that repeats its
  words. The best neighbour is the one whose own match (0.5 * text + 0.5 * semantic) is
  the highest; without one, it counts 0.
- importance: the memory's importance as stored.
- recency: 1 / (1 + days since the last write / 30): 1 today, 1/2 after a month.
- access: n / (n + 10) for n reads: 1/2 after ten reads, approaching 1. Its weight is
  the smallest, so that being returned cannot snowball: however often a memory was read,
  access lifts it by at most 0.04, never past a memory that matches 5% better.

A memory matches when its key or content holds a word of the query (as
SEARCH_LANGUAGE reads words: by default stemmed, English stop words ignored; see
services/fulltext.py), or when its meaning is close (cosine similarity at least
SEMANTIC_FLOOR, and at least SEMANTIC_RELATIVE of the best among the user's memories);
only matches are ranked, and context only lifts them. Candidates are
the LEXICAL best text matches and the SEMANTIC nearest vectors of the user's memories
(webapp.services.vector_index), read back with every condition of the search (active
only: not deleted, not expired; owner, namespace, tags); the CONTEXT best by match then
bring in their matching neighbours.
Returning a memory counts as an access, in SQL. Without the model (SEMANTIC_SEARCH=false,
or a search across every user's memories), semantic is 0 and text alone finds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sqlalchemy import func, literal_column, select
from sqlalchemy.sql.elements import ColumnElement

from webapp.db import Database
from webapp.errors import NotFound
from webapp.models import LongTermMemory, SearchRequest
from webapp.services import common_words, fulltext, search_context, vectors
from webapp.services.filters import namespace_condition, state_condition, tags_condition
from webapp.services.memories import count_access
from webapp.services.plan import Plan, no_index
from webapp.services.principal import Principal
from webapp.services.users import resolve_user
from webapp.services.vector_index import Similarities, get_index
from webapp.settings import SearchLanguage, get_settings
from webapp.types import utcnow

WEIGHTS = {"text": 0.40, "semantic": 0.40, "importance": 0.10, "recency": 0.06, "access": 0.04}
MATCH_WEIGHTS = {"text": 0.5, "semantic": 0.5}
CONTEXT_WEIGHT = 0.3
RECENCY_DAYS = 30.0
ACCESS_HALF = 10.0
LEXICAL = 100
SEMANTIC = 100
SEMANTIC_FILTERED = 2000
"""With a namespace or tags filter many nearest vectors are filtered out: take more."""
SEMANTIC_FLOOR = 0.3
"""The least cosine similarity that makes a memory match by meaning alone; with this
model unrelated sentences score about 0 to 0.25 (a LoCoMo question and an unrelated turn
of the same conversation: median 0.24, names and all)."""
SEMANTIC_RELATIVE = 0.7
"""And at least this share of the best similarity among the user's memories: a one-word
query is close to many short memories ("tea" and "chocolate cake": 0.40), but closest
to the ones about it ("tea for bob": 0.70). On LoCoMo it costs 0.006 of recall@10."""
CONTEXT = 10
TEXT_WEIGHTS_POSTGRES = "{0.1, 0.2, 0.5, 1.0}"  # D, C, B (content), A (key)

_c = LongTermMemory.__table__.c  # type: ignore[attr-defined]


@dataclass
class ScoredMemory:
    """A search result: the memory, its score and the components the score sums."""

    memory: LongTermMemory
    score: float
    score_components: dict[str, float]


@dataclass
class Ranked:
    """A match's place in a ranking, before it is read (and counted as an access)."""

    memory_id: int
    score: float
    parts: dict[str, float]


def _relevance(
    terms: list[fulltext.Term], dialect: str, language: SearchLanguage, owner: int | None
) -> tuple[ColumnElement[float], list[ColumnElement[bool]]]:
    """Text relevance (higher is better) and the conditions that make it computable; they
    ask the index for owner's memories only (see fulltext.OWNER_PREFIX)."""
    if dialect == "postgresql":
        # Ranked by the words only: the owner word is a filter, not relevance.
        relevance = func.ts_rank(
            literal_column(f"'{TEXT_WEIGHTS_POSTGRES}'::float4[]"),
            literal_column(fulltext.SEARCH_VECTOR),
            fulltext.tsquery(terms, language, every=False),
        )
        return relevance, [fulltext.postgres_match(terms, language, every=False, owner=owner)]
    fts = fulltext.fts_table
    bm25 = -func.bm25(literal_column(fulltext.FTS_TABLE), 2.0, 1.0, 0.0)  # key, content, owner
    return bm25, [fulltext.fts5_match(terms, every=False, owner=owner), fts.c.rowid == _c.id]


def _age_days(updated_at: datetime, now: datetime) -> float:
    """Days from updated_at to now, never negative."""
    return max(0.0, (now - updated_at).total_seconds() / 86400.0)


async def _owner(db: Database, principal: Principal, user: str | None) -> int | None:
    """Whose memories to search: the principal's own, or (admins) the named user's."""
    if user is None:
        return principal.own_user_id
    owner = await resolve_user(db, principal=principal, username=user)
    if owner is None:
        raise NotFound("no such user")
    return owner


async def search(
    db: Database, *, principal: Principal, request: SearchRequest, user: str | None = None
) -> list[ScoredMemory]:
    """The best-ranked active memories for request, counting each returned one as an access."""
    ranked = await rank(db, principal=principal, request=request, user=user)
    counted = await count_access(db, ids=[scored.memory_id for scored in ranked])
    return [
        ScoredMemory(
            memory=counted[scored.memory_id], score=scored.score, score_components=scored.parts
        )
        for scored in ranked
        if scored.memory_id in counted
    ]


def _conditions(
    db: Database, request: SearchRequest, owner: int | None, now: datetime
) -> list[ColumnElement[bool]]:
    """What every candidate must satisfy: active, the owner's, in the namespace, tagged."""
    conditions = [state_condition("active", now=now)]
    if owner is not None:
        # The owner word has narrowed the text matches inside the index already; with
        # an indexable user_id test too, PostgreSQL also read the user's 60,000 row ids
        # from the user_id index to intersect them (11 ms instead of 5): a check of each
        # match instead.
        conditions.append(no_index(_c.user_id, db.dialect) == owner)
    if request.namespace:
        conditions.append(namespace_condition(request.namespace))
    if request.tags:
        conditions.append(
            tags_condition(request.tags, mode="all", plan=Plan(db.dialect, db.search_language))
        )
    return conditions


async def _lexical(
    db: Database, request: SearchRequest, owner: int | None, now: datetime
) -> dict[int, float]:
    """The LEXICAL best text matches: id -> relevance. Words too common among a heavy
    user's memories are left to the semantic part (services/common_words.py)."""
    terms = fulltext.parse_terms(request.query, db.search_language)
    if owner is not None and vectors.enabled():
        catch_up = get_settings().search_catch_up
        terms = await common_words.selective_terms(db, terms, owner, catch_up=catch_up)
        if not terms:
            return {}
    relevance, match = _relevance(terms, db.dialect, db.search_language, owner)
    query = select(_c.id, relevance.label("relevance"))
    if db.dialect == "sqlite":
        query = query.select_from(fulltext.fts_table)
    query = (
        query.where(*match, *_conditions(db, request, owner, now))
        .order_by(relevance.desc(), _c.id.desc())
        .limit(LEXICAL)
    )
    async with db.read_connection() as session:
        return {row.id: float(row.relevance) for row in await session.execute(query)}


async def _semantic(
    db: Database, request: SearchRequest, owner: int | None
) -> tuple[dict[int, float], float, Similarities | None]:
    """The SEMANTIC nearest of the user's memories that match by meaning (id -> cosine
    similarity to the query), the least similarity that makes a match this time, and
    every similarity of the user's vectors (None without vectors)."""
    if owner is None or not vectors.enabled():
        return {}, 1.0, None
    query_vector = await vectors.query_vector(request.query)
    # What the agent wrote a moment ago may still wait for its vector: embed it now.
    catch_up = get_settings().search_catch_up
    every = await get_index().similarities(db, owner, query_vector, catch_up=catch_up)
    wanted = SEMANTIC_FILTERED if request.namespace or request.tags else SEMANTIC
    nearest, floor = _nearest(every, wanted)
    return nearest, floor, every


def _nearest(every: Similarities, wanted: int) -> tuple[dict[int, float], float]:
    """The wanted most similar that match by meaning (id -> similarity), and the least
    similarity that makes a match this time."""
    ids, similarity = every.ids, every.values
    if not len(ids):
        return {}, 1.0
    floor = max(SEMANTIC_FLOOR, SEMANTIC_RELATIVE * float(similarity.max()))
    if len(ids) > wanted:
        best = np.argpartition(-similarity, wanted)[:wanted]
        ids, similarity = ids[best], similarity[best]
    nearest = {
        memory_id: value
        for memory_id, value in zip(ids.tolist(), similarity.tolist(), strict=True)
        if value >= floor
    }
    return nearest, floor


async def _semantic_on_own_connection(
    db: Database, request: SearchRequest, owner: int | None
) -> tuple[dict[int, float], float, Similarities | None]:
    """_semantic with its reads on one connection (a task of its own cannot share the
    request's): one checkout instead of one a statement."""
    async with db.pinned_reads():
        return await _semantic(db, request, owner)


async def rank(
    db: Database, *, principal: Principal, request: SearchRequest, user: str | None = None
) -> list[Ranked]:
    """The ids of the best-ranked active memories for request, best first, with their
    scores; reading them is not yet an access (count_access)."""
    now = utcnow()
    owner = await _owner(db, principal, user)
    # The semantic part (a few small reads, then numpy) runs beside the text part, which
    # stays in this task: on the request's own connection, whose page cache its last
    # write left warm (SQLite empties every other connection's at each commit).
    by_meaning = asyncio.create_task(_semantic_on_own_connection(db, request, owner))
    try:
        lexical = await _lexical(db, request, owner, now)
    finally:
        semantic, floor, every = await by_meaning
    conditions = _conditions(db, request, owner, now)
    candidates = set(lexical) | set(semantic)
    # A text match's semantic part is its own similarity, even when it was too far in
    # meaning to be a candidate by it.
    if every is not None:
        semantic.update(every.of(candidates - set(semantic)))

    def part(value: float, best: float) -> float:
        return min(1.0, max(0.0, value / best)) if best > 0 else 0.0

    def scorer(among: Iterable[int]) -> Callable[[int], tuple[float, float, float]]:
        """A memory's text, semantic and match parts, relative to the best among."""
        best_text = max((lexical.get(i, 0.0) for i in among), default=0.0)
        best_semantic = max((semantic.get(i, 0.0) for i in among), default=0.0)

        def match(memory_id: int) -> tuple[float, float, float]:
            text = part(lexical.get(memory_id, 0.0), best_text)
            meaning = part(semantic.get(memory_id, 0.0), best_semantic)
            return text, meaning, MATCH_WEIGHTS["text"] * text + MATCH_WEIGHTS["semantic"] * meaning

        return match

    def leading(matched: dict[int, tuple[float, float, float]], count: int) -> list[int]:
        return sorted(matched, key=lambda i: (-matched[i][2], -i))[:count]

    # The leaders' neighbours are read with the candidates, for leaders guessed among
    # all candidates (some may turn out deleted, expired or filtered out).
    guess = scorer(candidates)
    likely = leading({i: guess(i) for i in candidates}, CONTEXT + 2)
    rows, next_to = await search_context.read_candidates(
        db, candidates, conditions, likely_leaders=likely
    )
    if not rows:
        return []
    match = scorer(rows)
    matched = {memory_id: match(memory_id) for memory_id in rows}
    leaders = leading(matched, CONTEXT)
    unguessed = [leader for leader in leaders if leader not in likely]
    if unguessed:
        next_to += await search_context.neighbours(db, unguessed, conditions)
    nearby = search_context.Neighbourhood.of(next_to, set(leaders))
    missing = set(nearby.rows) - set(rows)
    if missing and every is not None:
        # A neighbour joins only if it matches by itself: close enough in meaning.
        close = {i: value for i, value in every.of(missing).items() if value >= floor}
        semantic.update(close)
        rows.update({memory_id: nearby.rows[memory_id] for memory_id in close})
        matched.update({memory_id: match(memory_id) for memory_id in close})
    best_neighbour = search_context.best_neighbour(
        nearby.adjacent, {i: m[2] for i, m in matched.items()}
    )

    blended = {}
    for memory_id in rows:
        text, meaning, _ = matched[memory_id]
        beside = best_neighbour.get(memory_id)
        text_beside, meaning_beside, _ = matched[beside] if beside in matched else (0.0, 0.0, 0)
        blended[memory_id] = (
            text + CONTEXT_WEIGHT * text_beside,
            meaning + CONTEXT_WEIGHT * meaning_beside,
        )
    top_text = max(text for text, _ in blended.values())
    top_meaning = max(meaning for _, meaning in blended.values())

    ranked = []
    for memory_id, row in rows.items():
        text, meaning = blended[memory_id]
        parts = {
            "text": part(text, top_text),
            "semantic": part(meaning, top_meaning),
            "importance": float(row.importance),
            "recency": 1.0 / (1.0 + _age_days(row.updated_at, now) / RECENCY_DAYS),
            "access": row.access_count / (row.access_count + ACCESS_HALF),
        }
        score = sum(WEIGHTS[name] * value for name, value in parts.items())
        ranked.append(
            Ranked(
                memory_id=memory_id,
                score=round(score, 6),
                parts={name: round(value, 6) for name, value in parts.items()},
            )
        )
    ranked.sort(key=lambda entry: (-entry.score, -entry.memory_id))
    return ranked[: request.limit]
