"""Ranked search for agents: the memories that best answer a query, with why they rank.

score = 0.55 * text + 0.20 * importance + 0.15 * recency + 0.10 * access, each
component in [0, 1]:

- text: the database's own relevance (SQLite FTS5 bm25, PostgreSQL ts_rank), with a
  word in the key counting twice a word in the content, divided by the best relevance
  among the matches, so the best text match scores 1.
- importance: the memory's importance as stored.
- recency: 1 / (1 + days since the last write / 30): 1 today, 1/2 after a month.
- access: n / (n + 10) for n reads: 1/2 after ten reads, approaching 1.

A memory matches when its key or content holds any word of the query (more words
matched means more text relevance), as SEARCH_LANGUAGE reads words: by default stemmed,
English stop words ignored (services/fulltext.py). Only active memories (not deleted,
not expired) are searched, and returning them counts as an access, in SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Float, String, bindparam, case, cast, func, literal_column, select
from sqlalchemy.sql.elements import ColumnElement

from webapp.db import Database
from webapp.errors import NotFound
from webapp.formats import sqlite_datetime_text
from webapp.models import LongTermMemory, SearchRequest
from webapp.services import fulltext
from webapp.services.filters import namespace_condition, state_condition, tags_condition
from webapp.services.memories import count_access
from webapp.services.plan import Plan, no_index
from webapp.services.principal import Principal
from webapp.services.users import resolve_user
from webapp.settings import SearchLanguage
from webapp.types import utcnow

WEIGHTS = {"text": 0.55, "importance": 0.20, "recency": 0.15, "access": 0.10}
RECENCY_DAYS = 30.0
ACCESS_HALF = 10.0
TEXT_WEIGHTS_POSTGRES = "{0.1, 0.2, 0.5, 1.0}"  # D, C, B (content), A (key)

_c = LongTermMemory.__table__.c  # type: ignore[attr-defined]


@dataclass
class ScoredMemory:
    """A search result: the memory, its score and the components the score sums."""

    memory: LongTermMemory
    score: float
    score_components: dict[str, float]


def _relevance(
    query: str, dialect: str, language: SearchLanguage, owner: int | None
) -> tuple[ColumnElement[float], list[ColumnElement[bool]]]:
    """Text relevance (higher is better) and the conditions that make it computable; they
    ask the index for owner's memories only (see fulltext.OWNER_PREFIX)."""
    terms = fulltext.parse_terms(query, language)
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
    return bm25, [
        literal_column(fulltext.FTS_TABLE).op("MATCH")(
            fulltext.fts5_query_text(terms, every=False, owner=owner)
        ),
        fts.c.rowid == _c.id,
    ]


def _age_days(updated_at: Any, dialect: str, now: datetime) -> ColumnElement[float]:
    """Days from updated_at to now, never negative."""
    if dialect == "postgresql":
        days = func.extract("epoch", bindparam("now", now) - updated_at) / 86400.0
        return func.greatest(0.0, days)
    now_text = bindparam("now_text", sqlite_datetime_text(now), type_=String)
    return func.max(0.0, func.julianday(now_text) - func.julianday(updated_at))


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


@dataclass
class Ranked:
    """A match's place in a ranking, before it is read (and counted as an access)."""

    memory_id: int
    score: float
    parts: dict[str, float]


async def rank(
    db: Database, *, principal: Principal, request: SearchRequest, user: str | None = None
) -> list[Ranked]:
    """The ids of the best-ranked active memories for request, best first, with their
    scores; reading them is not yet an access (count_access)."""
    now = utcnow()
    owner = await _owner(db, principal, user)
    relevance, match = _relevance(request.query, db.dialect, db.search_language, owner)
    conditions = [*match, state_condition("active", now=now)]
    if owner is not None:
        # The owner word has narrowed the matches inside the text index already; with
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

    matches = select(
        _c.id, relevance.label("relevance"), _c.importance, _c.updated_at, _c.access_count
    )
    if db.dialect == "sqlite":
        matches = matches.select_from(fulltext.fts_table)
    matches_cte = matches.where(*conditions).cte("matches")
    m = matches_cte.c
    best = func.max(m.relevance).over()
    text_part = case((best > 0, m.relevance / best), else_=0.0)
    age = _age_days(m.updated_at, db.dialect, now)
    scored = select(
        m.id,
        cast(text_part, Float).label("text"),
        cast(m.importance, Float).label("importance"),
        cast(1.0 / (1.0 + age / RECENCY_DAYS), Float).label("recency"),
        cast(m.access_count / (m.access_count + ACCESS_HALF), Float).label("access"),
    ).subquery("scored")
    s = scored.c
    score = sum((WEIGHTS[name] * s[name] for name in WEIGHTS), start=literal_column("0.0"))
    ranked = (
        select(s.id, s.text, s.importance, s.recency, s.access, score.label("score"))
        .order_by(score.desc(), s.id.desc())
        .limit(request.limit)
    )
    async with db.read() as session:
        rows = (await session.execute(ranked)).all()
    return [
        Ranked(
            memory_id=row.id,
            score=round(float(row.score), 6),
            parts={name: round(float(getattr(row, name)), 6) for name in WEIGHTS},
        )
        for row in rows
    ]
