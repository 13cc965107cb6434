"""Words too common among a heavy user's memories (services/common_words.py), on both
databases: the text part of search leaves them to the semantic part, ranks by the rarer
ones, and never does so for a small user or one whose vectors are behind."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from webapp.db import Database
from webapp.models import MemoryCreate
from webapp.models import SearchRequest as Request
from webapp.services import common_words, memories, search, vectors
from webapp.services.fulltext import Term
from webapp.services.principal import Principal

from .factories import make_user

COFFEE = [f"Had a coffee with colleague number {i} before work." for i in range(12)]
LISBON = ["Booked a coffee tour in Lisbon for May.", "Flew to Lisbon for the conference."]
OTHER = [f"Repaired bicycle wheel number {i}." for i in range(6)]


@pytest.fixture
async def me(database: Database) -> Principal:
    async with database.read() as session:
        return Principal.of_user(await make_user(session, username="heavy"))


async def remember_all(
    database: Database, me: Principal, contents: list[str], namespace: str = "notes"
) -> None:
    for i, content in enumerate(contents):
        data = MemoryCreate(namespace=namespace, key=f"note-{i}", content=content)
        await memories.remember(database, principal=me, data=data)


async def embed_all(database: Database) -> None:
    while await vectors.drain(database):
        pass


@pytest.fixture
async def heavy(database: Database, me: Principal, monkeypatch: pytest.MonkeyPatch) -> Principal:
    """A user with more memories than MAX_RANKED (made small), coffee in most of them,
    their vectors made and the statistics of PostgreSQL current."""
    monkeypatch.setattr(common_words, "MAX_RANKED", 5)
    monkeypatch.setattr(common_words, "STATISTICS_TTL", 0.0)
    await remember_all(database, me, COFFEE + LISBON + OTHER)
    await embed_all(database)
    if database.dialect == "postgresql":
        async with database.engine.begin() as connection:
            await connection.execute(text("ANALYZE long_term_memory"))
    return me


def test_the_rarest_words_are_kept_within_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common_words, "MAX_RANKED", 100)
    coffee, lisbon, tour = Term("coffee"), Term("lisbon"), Term("tour", prefix=True)
    counts = [(coffee, 90), (lisbon, 40), (tour, 50)]
    assert common_words.keep_rarest(counts, memories=100) == [coffee, lisbon, tour]
    assert common_words.keep_rarest(counts, memories=101) == [lisbon, tour]
    assert common_words.keep_rarest([(coffee, 101)], memories=5000) == []
    assert common_words.keep_rarest([(coffee, 100)], memories=5000) == [coffee]


async def test_a_common_word_is_left_out_and_a_rare_one_kept(
    database: Database, heavy: Principal
) -> None:
    assert heavy.user_id is not None
    terms = [Term("coffee"), Term("lisbon")]
    kept = await common_words.selective_terms(database, terms, heavy.user_id, catch_up=8)
    assert kept == [Term("lisbon")]


async def test_search_ranks_by_the_rare_word_and_still_finds_by_meaning(
    database: Database, heavy: Principal
) -> None:
    found = await search.search(
        database, principal=heavy, request=Request(query="coffee in Lisbon", limit=20)
    )
    by_content = {result.memory.content: result for result in found}
    assert set(LISBON) <= set(by_content)
    assert all(by_content[content].score_components["text"] > 0 for content in LISBON)
    coffee_only = [by_content[c] for c in COFFEE if c in by_content]
    assert all(result.score_components["text"] == 0 for result in coffee_only)

    only_common = await search.search(
        database, principal=heavy, request=Request(query="coffee", limit=20)
    )
    assert only_common, "the semantic part finds what the text part left out"
    assert all(result.score_components["text"] == 0 for result in only_common)
    assert {result.memory.content for result in only_common} & set(COFFEE)


async def test_every_word_counts_for_a_small_user_or_vectors_behind(
    database: Database, heavy: Principal, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert heavy.user_id is not None
    terms = [Term("coffee"), Term("lisbon")]
    monkeypatch.setattr(common_words, "MAX_RANKED", 100)
    assert await common_words.selective_terms(database, terms, heavy.user_id, catch_up=8) == terms

    monkeypatch.setattr(common_words, "MAX_RANKED", 5)
    await remember_all(database, heavy, [f"Decaf coffee number {i}." for i in range(10)], "later")
    # Ten memories wait for their vectors, more than a search embeds itself (8).
    assert await common_words.selective_terms(database, terms, heavy.user_id, catch_up=8) == terms
    found = await search.search(database, principal=heavy, request=Request(query="coffee"))
    assert any(result.score_components["text"] > 0 for result in found)
