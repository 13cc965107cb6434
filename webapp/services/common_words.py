"""Which words of a search are too common among a user's memories to rank them by.

The text part of search ranks every memory of the user that holds a word of the query
(services/search.py). Its cost grows with those matches, and with how many of all
memories hold the word: FTS5's bm25 reads the word's whole list of rows for its inverse
document frequency, and PostgreSQL reads the word's whole entry of the GIN index, then
ranks each match's search vector. At a million generated memories the heaviest user
(54,000) has "coffee" in 41,000 of them: ranking it took 120 ms on SQLite and 180 ms on
PostgreSQL, and "what does the user prefer in the morning" 165 and 320 ms, where a word
in 2% of them takes 7 ms. A word in most of a user's memories tells them apart no
better than a stop word (bm25 gives a word in half of all rows no weight at all).

So, for a user with more than MAX_RANKED memories, and only while the user's vectors
are up to date (the semantic part finds by meaning what the text part leaves), the text
part keeps the query's rarest words whose matches add up to at most MAX_RANKED, and
leaves the others out; with none left, the semantic part alone finds. A user with fewer
memories, or a search without vectors, ranks by every word, as before. How matches are
counted:

- SQLite: the user's rows holding the word, counted in the full-text index up to
  MAX_RANKED + 1 (a bounded walk of the word's and the owner's lists: under a
  millisecond).
- PostgreSQL: the word's share of all rows as ANALYZE last saw it (pg_stats'
  most_common_elems of the search vector, read once every STATISTICS_TTL seconds),
  times the user's memories; a word that ANALYZE did not list is rarer than every
  listed one. Counting in the GIN index would itself read the word's whole entry.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import ColumnElement, ScalarSelect, func, literal, literal_column, select, text

from webapp.db import Database
from webapp.models import NamespaceSummary
from webapp.services import fulltext, vectors
from webapp.services.fulltext import Term

MAX_RANKED = 2_000
"""The most matches the text part ranks for a user with more memories than this."""
STATISTICS_TTL = 600.0
"""Seconds a process keeps PostgreSQL's word statistics before reading them again."""

_summary = NamespaceSummary.__table__.c  # type: ignore[attr-defined]


def _user_size(owner: int, catch_up: int) -> tuple[ScalarSelect[Any], ScalarSelect[int]]:
    """The owner's memories (every state: the index holds them all), from the summary,
    and how many wait for a vector, up to catch_up + 1."""
    memories = (
        select(func.coalesce(func.sum(_summary.live_count + _summary.deleted_count), 0))
        .where(_summary.user_id == owner)
        .scalar_subquery()
    )
    return memories, vectors.waiting(owner, catch_up + 1)


_POSTGRES_STATISTICS = text(
    f"""SELECT f.lexeme, f.share FROM pg_stats AS p,
        unnest(p.most_common_elems::text::text[], p.most_common_elem_freqs)
            AS f(lexeme, share)
    WHERE p.schemaname = current_schema() AND p.tablename = 'long_term_memory'
        AND p.attname = '{fulltext.SEARCH_VECTOR}'"""
)


def keep_rarest(counts: list[tuple[Term, int]], memories: int) -> list[Term]:
    """The terms to rank by (in the query's order): all for a user of at most MAX_RANKED
    memories; else the rarest whose matches add up to at most MAX_RANKED."""
    if memories <= MAX_RANKED:
        return [term for term, _ in counts]
    kept, total = set(), 0
    for term, count in sorted(counts, key=lambda pair: pair[1]):
        if total + count > MAX_RANKED:
            break
        kept.add(term)
        total += count
    return [term for term, _ in counts if term in kept]


async def selective_terms(
    db: Database, terms: list[Term], owner: int, *, catch_up: int
) -> list[Term]:
    """Those of terms the text part ranks owner's memories by (see above). A user with
    more than catch_up memories waiting for their vectors keeps every term: the
    semantic part could not find those memories."""
    if db.dialect == "postgresql":
        memories, queued, counts = await _postgres_counts(db, terms, owner, catch_up)
    else:
        memories, queued, counts = await _sqlite_counts(db, terms, owner, catch_up)
    if queued > catch_up:
        return terms
    return keep_rarest(list(zip(terms, counts, strict=True)), memories)


async def _sqlite_counts(
    db: Database, terms: list[Term], owner: int, catch_up: int
) -> tuple[int, int, list[int]]:
    counts = [
        select(func.count())
        .select_from(
            select(literal(1))
            .select_from(fulltext.fts_table)
            .where(fulltext.fts5_match([term], every=False, owner=owner))
            .limit(MAX_RANKED + 1)
            .subquery()
        )
        .scalar_subquery()
        for term in terms
    ]
    async with db.read_connection() as connection:
        row = (await connection.execute(select(*_user_size(owner, catch_up), *counts))).one()
    return int(row[0]), int(row[1]), [int(count) for count in row[2:]]


class _Shares:
    """PostgreSQL's most common words of the search vector and their share of rows."""

    def __init__(self) -> None:
        self.by_lexeme: dict[str, float] = {}
        self.floor = 0.0
        """The least share listed: an unlisted word's share is below it."""
        self.read_at: float | None = None

    async def current(self, db: Database) -> _Shares:
        if self.read_at is None or time.monotonic() - self.read_at > STATISTICS_TTL:
            async with db.read_connection() as connection:
                rows = (await connection.execute(_POSTGRES_STATISTICS)).all()
            self.by_lexeme = {lexeme: float(share) for lexeme, share in rows}
            self.floor = min(self.by_lexeme.values(), default=0.0)
            self.read_at = time.monotonic()
        return self

    def of(self, lexemes: list[str], prefix: bool) -> float:
        """The share of rows holding one of lexemes (a term's), or a word they start."""
        if prefix:
            starting = [
                share
                for word, share in self.by_lexeme.items()
                if any(word.startswith(lexeme) for lexeme in lexemes)
            ]
            return min(1.0, sum(starting)) if starting else self.floor
        return max((self.by_lexeme.get(lexeme, self.floor) for lexeme in lexemes), default=0.0)


_shares: dict[str, _Shares] = {}
"""By database URL: a process may use more than one database (tests, tools)."""


async def _postgres_counts(
    db: Database, terms: list[Term], owner: int, catch_up: int
) -> tuple[int, int, list[int]]:
    config: ColumnElement[Any] = literal_column(f"'{db.search_language}'::regconfig")
    lexemes = [func.tsvector_to_array(func.to_tsvector(config, term.word)) for term in terms]
    async with db.read_connection() as connection:
        row = (await connection.execute(select(*_user_size(owner, catch_up), *lexemes))).one()
    url = db.engine.url.render_as_string(hide_password=True)
    shares = await _shares.setdefault(url, _Shares()).current(db)
    memories = int(row[0])
    counts = [
        round(shares.of(list(found or []), term.prefix) * memories)
        for term, found in zip(terms, row[2:], strict=True)
    ]
    return memories, int(row[1]), counts
