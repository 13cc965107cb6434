"""SEARCH_LANGUAGE (services/fulltext.py, services/fulltext_language.py) on both databases:
English stems words and ignores stop words, `simple` keeps words as written, and an index
built for another language is detected and rebuilt."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api_support import Agent
from webapp import migrate
from webapp.db import Database, create_engine
from webapp.errors import DatabaseUnavailable
from webapp.models import BrowseQuery, LongTermMemory, MemoryCreate, SearchRequest
from webapp.services import fulltext, memories, search
from webapp.services.browse import browse
from webapp.services.cursors import CursorSigner
from webapp.services.fulltext_language import check_index_language, index_language, reindex
from webapp.services.principal import Principal
from webapp.settings import SearchLanguage, Settings

from .factories import make_user

SIGNER = CursorSigner("test-secret")
COFFEE = "Drinks coffee black, no sugar; switched to decaf after 3pm."
TACOS = "Loves the tacos in the city"


async def add(database: Database, principal: Principal, key: str, content: str) -> LongTermMemory:
    data = MemoryCreate(namespace="facts", key=key, content=content)
    return (await memories.remember(database, principal=principal, data=data)).memory


async def q_filter(database: Database, q: str) -> set[int | None]:
    """The ids the browser's `q` filter finds (every state, one page)."""
    query = BrowseQuery(q=q, state="all", limit=200)
    page = await browse(database, principal=Principal.operator(), query=query, signer=SIGNER)
    return {memory.id for memory in page.items}


async def searched(database: Database, principal: Principal, query: str) -> list[int | None]:
    """The ids the agents' search returns, best first."""
    found = await search.search(database, principal=principal, request=SearchRequest(query=query))
    return [scored.memory.id for scored in found]


async def alice(database: Database) -> Principal:
    async with database.read() as session:
        return Principal.of_user(await make_user(session, username="alice"))


@pytest.fixture
async def english(db: AsyncEngine) -> Database:
    """The module's database, migrated with the default SEARCH_LANGUAGE (english)."""
    return Database(db)


@pytest.fixture
async def built_simple(fresh_database_url: str) -> AsyncIterator[AsyncEngine]:
    """A database of its own whose index was built for SEARCH_LANGUAGE=simple."""
    engine = create_engine(Settings(database_url=fresh_database_url, secret_key="test"))
    await migrate.upgrade(engine, search_language="simple")
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_english_finds_word_forms_in_search_and_q(english: Database) -> None:
    me = await alice(english)
    coffee = await add(english, me, "beverage", COFFEE)
    tacos = await add(english, me, "food", TACOS)

    # The question: "drink" finds "Drinks"; "the" and "in" no longer pick tacos.
    assert await searched(english, me, "what does the user drink in the afternoon") == [coffee.id]
    assert await searched(english, me, "loving taco") == [tacos.id]
    # The q filter keeps its meaning, every word must match, now on stems.
    assert await q_filter(english, "drinking coffee") == {coffee.id}
    assert await q_filter(english, "drinking tea") == set()
    assert await q_filter(english, "the drinking coffee") == {coffee.id}  # stop word ignored
    assert await q_filter(english, "switch* sug*") == {coffee.id}  # prefixes still work
    assert await q_filter(english, "cities") == {tacos.id}


async def test_stop_words_alone_do_not_match_everything(english: Database) -> None:
    """A query of stop words only finds the rows holding them (SQLite, whose index keeps
    them) or nothing (PostgreSQL, whose english index leaves them out); never the rest."""
    me = await alice(english)
    await add(english, me, "beverage", COFFEE)
    tacos = await add(english, me, "food", TACOS)
    expected = set() if english.dialect == "postgresql" else {tacos.id}

    assert await q_filter(english, "the") == expected
    if english.dialect == "postgresql":  # PostgreSQL drops a stop word even as a prefix
        assert await q_filter(english, "the*") == set()
        assert await searched(english, me, "the*") == []
    else:
        assert await q_filter(english, "the*") == {tacos.id}
    assert set(await searched(english, me, "the in")) == expected
    assert await searched(english, me, "who is it") == []


async def test_simple_keeps_words_as_written(built_simple: AsyncEngine) -> None:
    database = Database(built_simple, search_language="simple")
    assert await _language(built_simple) == "simple"
    me = await alice(database)
    coffee = await add(database, me, "beverage", COFFEE)
    tacos = await add(database, me, "food", TACOS)

    assert await q_filter(database, "drink") == set()
    assert await q_filter(database, "drinks coffee") == {coffee.id}
    assert await q_filter(database, "the") == {tacos.id}  # stop words are words here
    # Tacos by its words as written ("the", "in"); coffee by meaning only ("drink" is
    # not "Drinks" here), so after it.
    question = "what does the user drink in the afternoon"
    assert await searched(database, me, question) == [tacos.id, coffee.id]


async def test_a_mismatched_index_is_refused_then_rebuilt(built_simple: AsyncEngine) -> None:
    """The index remembers its language; the setting must agree until it is rebuilt."""
    with pytest.raises(DatabaseUnavailable, match="built for SEARCH_LANGUAGE=simple.*migrate"):
        await check_index_language(built_simple, "english")
    await check_index_language(built_simple, "simple")
    database = Database(built_simple, search_language="english")
    me = await alice(database)
    coffee = await add(database, me, "beverage", COFFEE)

    assert await reindex(built_simple, "english") is True
    assert await reindex(built_simple, "english") is False  # nothing left to do
    assert await _language(built_simple) == "english"
    await check_index_language(built_simple, "english")
    assert await q_filter(database, "drink") == {coffee.id}  # the row written before, by stem
    await add(database, me, "later", "She drinks water")  # and the triggers are back
    assert len(await q_filter(database, "drinking")) == 2


async def test_the_api_search_finds_word_forms(ann: Agent) -> None:
    """POST /api/v1/search: the question of issue 15 finds the coffee memory."""
    for key, content in (("coffee", COFFEE), ("tacos", TACOS)):
        body = {"namespace": "facts", "key": key, "content": content}
        assert (await ann.client.put("/memories", json=body)).status_code in (200, 201)
    question = {"query": "what does the user drink in the afternoon"}
    response = await ann.client.post("/search", json=question)
    assert response.status_code == 200, response.text
    assert [item["key"] for item in response.json()["items"]] == ["coffee"]


def test_stop_words_are_dropped_unless_nothing_else_is_left() -> None:
    words = [term.word for term in fulltext.parse_terms("What is THE taco*", "english")]
    assert words == ["taco"]
    assert [term.word for term in fulltext.parse_terms("who is it", "english")] == [
        "who",
        "is",
        "it",
    ]
    assert fulltext.only_stop_words(fulltext.parse_terms("who is it", "english"), "english")
    assert fulltext.only_stop_words(fulltext.parse_terms("the*", "english"), "english")
    assert not fulltext.only_stop_words(fulltext.parse_terms("the* tea", "english"), "english")
    assert len(fulltext.parse_terms("what is the taco", "simple")) == 4


async def _language(engine: AsyncEngine) -> SearchLanguage | None:
    async with engine.connect() as conn:
        return await index_language(conn)
