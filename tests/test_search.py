"""Full-text and tag search (services/fulltext.py, services/search.py), on both databases.

The indexes must agree with the rows after every write path, so each path is followed
by check_indexes(): every word and tag in use finds exactly the rows that hold it (or a
word of the same stem, as the database's own stemmer says), and on SQLite the FTS5 index
and the memory_tag side table match the table row for row.
"""

from __future__ import annotations

import io
import re
from datetime import timedelta

import orjson
import pytest
from sqlalchemy import select, text, update

from webapp.db import Database
from webapp.errors import InvalidInput, NotFound
from webapp.models import BrowseQuery, LongTermMemory, MemoryCreate, MemoryEvent, MemoryUpdate
from webapp.models import SearchRequest as Request
from webapp.services import browse_plan, bulk, fulltext, memories, search, transfer
from webapp.services.browse import browse
from webapp.services.cursors import CursorSigner
from webapp.services.principal import Principal
from webapp.services.retention import Retention
from webapp.settings import Settings
from webapp.types import utcnow

from .factories import make_user

SIGNER = CursorSigner("test-secret")
OPERATOR = Principal.operator()
WORD = re.compile(r"[^\W_]+")


async def find(database: Database, q: str, **filters: object) -> set[int]:
    """Ids of every memory (any state) whose key or content holds all words of q."""
    return await _all_ids(database, BrowseQuery(q=q, state="all", limit=200, **filters))  # type: ignore[arg-type]


async def tagged(database: Database, tag: str) -> set[int]:
    """Ids of every memory (any state) carrying tag."""
    return await _all_ids(database, BrowseQuery(tag=[tag], state="all", limit=200))


async def _all_ids(database: Database, query: BrowseQuery) -> set[int]:
    ids: set[int] = set()
    while True:
        page = await browse(database, principal=OPERATOR, query=query, signer=SIGNER)
        ids.update(memory.id for memory in page.items if memory.id is not None)
        if page.next_cursor is None:
            return ids
        query = query.model_copy(update={"cursor": page.next_cursor})


async def stems(database: Database, words: list[str]) -> dict[str, str | None]:
    """Each word as the database's index holds it (None: a stop word it leaves out),
    asked of the database itself: PostgreSQL's to_tsvector, SQLite's tokenizer through
    a scratch FTS5 table and its fts5vocab view."""
    async with database.engine.connect() as conn:
        if database.dialect == "postgresql":
            found = {}
            for word in words:
                vector = await conn.scalar(
                    text("SELECT strip(to_tsvector(CAST(:config AS regconfig), :word))::text"),
                    {"config": database.search_language, "word": word},
                )
                found[word] = vector or None
            return found
        tokenizer = fulltext.TOKENIZERS[database.search_language]
        await conn.exec_driver_sql(
            f"CREATE VIRTUAL TABLE temp.probe USING fts5(word, tokenize='{tokenizer}')"
        )
        await conn.exec_driver_sql(
            "CREATE VIRTUAL TABLE temp.probe_terms USING fts5vocab(temp, probe, instance)"
        )
        for number, word in enumerate(words, start=1):
            await conn.execute(
                text("INSERT INTO temp.probe(rowid, word) VALUES (:n, :w)"),
                {"n": number, "w": word},
            )
        rows = (await conn.exec_driver_sql("SELECT doc, term FROM temp.probe_terms")).all()
        await conn.exec_driver_sql("DROP TABLE temp.probe_terms")
        await conn.exec_driver_sql("DROP TABLE temp.probe")
        await conn.rollback()
    terms = {row.doc: row.term for row in rows}
    return {word: terms.get(number) for number, word in enumerate(words, start=1)}


async def check_indexes(database: Database) -> None:
    """Every word and tag in use finds exactly its rows; SQLite's side tables match too."""
    async with database.read() as session:
        rows = list((await session.execute(select(LongTermMemory))).scalars())
        if database.dialect == "sqlite":
            await session.execute(
                text(
                    "INSERT INTO long_term_memory_fts(long_term_memory_fts, rank) "
                    "VALUES ('integrity-check', 1)"
                )
            )
            side = set((await session.execute(text("SELECT tag, memory_id FROM memory_tag"))).all())
            assert side == {(tag, row.id) for row in rows for tag in row.tags}
    words: dict[str, set[int]] = {}
    tags: dict[str, set[int]] = {}
    for row in rows:
        assert row.id is not None
        for word in WORD.findall(f"{row.key} {row.content}".lower()):
            words.setdefault(word, set()).add(row.id)
        for tag in row.tags:
            tags.setdefault(tag, set()).add(row.id)
    stem_of = await stems(database, sorted(words))
    by_stem: dict[str | None, set[int]] = {}
    for word, ids in words.items():
        by_stem.setdefault(stem_of[word], set()).update(ids)
    for word in words:
        stem = stem_of[word]
        assert await find(database, word) == (by_stem[stem] if stem else set()), word
    for tag, ids in tags.items():
        assert await tagged(database, tag) == ids, tag


@pytest.fixture
async def me(database: Database) -> Principal:
    """alice, an ordinary user, acting in the admin app."""
    async with database.read() as session:
        return Principal.of_user(await make_user(session, username="alice"))


async def add(
    database: Database,
    principal: Principal,
    key: str,
    content: str,
    *,
    namespace: str = "facts",
    **fields: object,
) -> LongTermMemory:
    data = MemoryCreate(namespace=namespace, key=key, content=content, **fields)  # type: ignore[arg-type]
    return (await memories.remember(database, principal=principal, data=data)).memory


# --- the q filter --------------------------------------------------------------------


async def test_q_needs_every_word_in_key_or_content_any_case(
    database: Database, me: Principal
) -> None:
    tea = await add(database, me, "drinks", "Likes GREEN tea in the morning")
    coffee = await add(database, me, "green-coffee", "Drinks coffee at night")
    await add(database, me, "pets", "Has a cat called Tea-Rex")

    assert await find(database, "green") == {tea.id, coffee.id}  # content, then key words
    assert await find(database, "green tea") == {tea.id}
    assert await find(database, "Coffee NIGHT") == {coffee.id}
    assert await find(database, "gree*") == {tea.id, coffee.id}
    assert await find(database, "gree") == set()  # whole words unless asked for a prefix
    assert await find(database, "tea", namespace="other") == set()


@pytest.mark.parametrize(
    "q",
    [
        '"unbalanced',
        "tea AND OR NOT",
        "NEAR(tea green)",
        "content:tea",
        "-tea",
        "tea'; DROP TABLE users; --",
        "(tea",
        "tea & | !",
        "*",
        "^tea",
        "tea:*",
    ],
)
async def test_search_syntax_never_reaches_the_database(
    database: Database, me: Principal, q: str
) -> None:
    """Operators and quotes are separators: the words are searched, nothing else happens."""
    tea = await add(database, me, "drinks", "green tea and more")
    try:
        found = await find(database, q)
    except InvalidInput as exc:  # only when there is no word at all
        assert not WORD.findall(q), q
        assert "no words" in str(exc)
        return
    words = set(WORD.findall(q.lower()))
    searched = words - fulltext.STOP_WORDS  # English drops the stop words ("and", "or")
    assert searched
    assert found == ({tea.id} if searched <= {"tea", "green", "more"} else set())


async def test_q_refuses_too_many_words(database: Database) -> None:
    with pytest.raises(InvalidInput, match="at most 32 words"):
        await find(database, " ".join(f"w{n}" for n in range(33)))


async def test_q_combines_with_other_filters_and_scope(database: Database) -> None:
    async with database.read() as session:
        alice = await make_user(session, username="alice")
        bob = await make_user(session, username="bob")
    mine = await add(database, Principal.of_user(alice), "a", "shared word", tags=["x"])
    await add(database, Principal.of_user(alice), "b", "shared word", tags=["y"])
    await add(database, Principal.of_user(bob), "c", "shared word", tags=["x"])
    page = await browse(
        database,
        principal=Principal.of_user(alice),
        query=BrowseQuery(q="shared", tag=["x"]),
        signer=SIGNER,
    )
    assert [memory.id for memory in page.items] == [mine.id]
    assert page.count == 1


# --- consistency after every write path ------------------------------------------------


async def test_indexes_follow_each_write_path(
    database: Database, me: Principal, settings: Settings
) -> None:

    first = await add(database, me, "breakfast", "porridge with honey", tags=["food", "am"])
    second = await add(database, me, "lunch", "noodle soup", tags=["food"])
    await check_indexes(database)  # remember, creating

    await add(database, me, "breakfast", "toast with jam", tags=["food", "bread"])
    await check_indexes(database)  # remember, updating an existing key
    assert await find(database, "porridge") == set()

    assert first.id is not None and second.id is not None
    await memories.update_memory(
        database,
        principal=me,
        memory_id=second.id,
        changes=MemoryUpdate(content="ramen broth", tags=["dinner"]),
    )
    await check_indexes(database)  # update

    await memories.delete_memory(database, principal=me, memory_id=second.id)
    await check_indexes(database)  # soft delete: still found with state=all (Trash search)
    assert await find(database, "ramen") == {second.id}

    await memories.restore_memory(database, principal=me, memory_id=second.id)
    await check_indexes(database)  # restore

    await add(database, me, "breakfast", "toast with jam", tags=["food", "bread"])
    selection = bulk.Selection(ids=[first.id, second.id])
    await bulk.apply(
        database, principal=me, selection=selection, action=bulk.BulkAction.add_tag, value="x"
    )
    await bulk.apply(
        database, principal=me, selection=selection, action=bulk.BulkAction.remove_tag, value="food"
    )
    await check_indexes(database)  # bulk tag edits
    assert await tagged(database, "x") == {first.id, second.id}
    assert await tagged(database, "food") == set()

    await memories.delete_memory(database, principal=me, memory_id=second.id)
    async with database.write() as session:  # pretend it was deleted long ago
        await session.execute(
            update(LongTermMemory)
            .where(LongTermMemory.id == second.id)  # type: ignore[arg-type]
            .values(deleted_at=utcnow() - timedelta(days=31))
        )
    report = await memories.purge(database, principal=OPERATOR, retention=Retention())
    assert report.deleted == 1
    await check_indexes(database)  # purge
    assert await find(database, "ramen") == set()
    assert await tagged(database, "dinner") == set()

    lines = [
        {"user": "alice", "namespace": "facts", "key": "breakfast", "content": "eggs benedict",
         "tags": ["brunch"]},
        {"user": "carol", "namespace": "facts", "key": "fresh", "content": "new words arrive",
         "tags": ["imported"]},
    ]  # fmt: skip
    source = io.BytesIO(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    await transfer.import_jsonl(database, source=source, settings=settings)
    await check_indexes(database)  # import into a table that has rows
    assert await find(database, "eggs") == {first.id}
    assert await find(database, "toast") == set()
    later = await add(database, me, "after", "written after the import", tags=["later"])
    assert await find(database, "written") == {later.id}  # per-row upkeep is back
    assert await tagged(database, "later") == {later.id}


async def test_import_into_an_empty_table_builds_the_indexes(
    database: Database, settings: Settings
) -> None:
    """The empty-table import defers the search indexes and builds them at the end."""
    lines = [
        {"user": f"u{n % 3}", "namespace": "ns", "key": f"k{n}", "content": f"word{n % 7} common",
         "tags": [f"t{n % 5}", "all"]}
        for n in range(300)
    ]  # fmt: skip
    source = io.BytesIO(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    report = await transfer.import_jsonl(database, source=source, settings=settings)
    assert report.created == 300
    await check_indexes(database)
    async with database.read() as session:  # and the triggers are back for later writes
        user = await make_user(session, username="later")
    later = await add(database, Principal.of_user(user), "k", "brandnew", tags=["fresh"])
    assert await find(database, "brandnew") == {later.id}
    assert await tagged(database, "fresh") == {later.id}


@pytest.mark.parametrize("table", ["empty", "with rows"])
async def test_a_dry_run_import_leaves_the_indexes_as_they_were(
    database: Database, me: Principal, settings: Settings, table: str
) -> None:
    if table == "with rows":
        await add(database, me, "first", "already here")
    source = io.BytesIO(orjson.dumps({"user": "u", "namespace": "n", "key": "k", "content": "x"}))
    await transfer.import_jsonl(database, source=source, settings=settings, dry_run=True)
    memory = await add(database, me, "k", "searchable", tags=["t"])
    assert await find(database, "searchable") == {memory.id}
    assert await tagged(database, "t") == {memory.id}
    await check_indexes(database)


# --- ranked search ---------------------------------------------------------------------


async def test_ranking_combines_documented_components(database: Database, me: Principal) -> None:
    in_key = await add(database, me, "coffee", "an order at the cafe", importance=0.5)
    in_content = await add(database, me, "order", "an order of coffee", importance=0.5)
    important = await add(database, me, "other", "coffee again", importance=1.0)
    await add(database, me, "unrelated", "nothing here")

    results = await search.search(database, principal=me, request=Request(query="coffee"))
    ids = [result.memory.id for result in results]
    assert set(ids) == {in_key.id, in_content.id, important.id}
    text = {r.memory.id: r.score_components["text"] for r in results}
    assert text[in_key.id] > text[in_content.id]  # a word in the key counts more
    for result in results:
        parts = result.score_components
        assert set(parts) == {"text", "semantic", "importance", "recency", "access"}
        assert all(0.0 <= value <= 1.0 for value in parts.values())
        expected = sum(search.WEIGHTS[name] * parts[name] for name in parts)
        assert result.score == pytest.approx(expected, abs=1e-5)
        assert parts["recency"] == pytest.approx(1.0, abs=0.01)  # written just now
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    assert max(r.score_components["text"] for r in results) == pytest.approx(1.0)
    assert results[0].score_components["access"] == 0.0  # before this search's own access


async def test_more_matching_words_rank_higher_and_any_word_matches(
    database: Database, me: Principal
) -> None:
    both = await add(database, me, "a", "green tea every day")
    one = await add(database, me, "b", "green paint on the wall")
    results = await search.search(database, principal=me, request=Request(query="green tea"))
    assert [result.memory.id for result in results] == [both.id, one.id]


async def test_search_hides_deleted_expired_and_other_users(database: Database) -> None:
    async with database.read() as session:
        alice = await make_user(session, username="alice")
        bob = await make_user(session, username="bob")
    me = Principal.of_user(alice)
    live = await add(database, me, "live", "kiwi fruit")
    gone = await add(database, me, "gone", "kiwi bird")
    await add(database, me, "old", "kiwi juice", expires_at=utcnow() - timedelta(seconds=1))
    await add(database, Principal.of_user(bob), "bobs", "kiwi cake")
    assert gone.id is not None
    await memories.delete_memory(database, principal=me, memory_id=gone.id)

    results = await search.search(database, principal=me, request=Request(query="kiwi"))
    assert [result.memory.id for result in results] == [live.id]


async def test_the_owner_word_of_the_index_is_not_searchable(database: Database) -> None:
    """SQLite indexes each memory's owner as a word (`u<user id>`) to search one user's
    memories fast: searching that word finds only memories that say it themselves."""
    async with database.read() as session:
        alice = await make_user(session, username="alice")
    me = Principal.of_user(alice)
    owner_word = f"{fulltext.OWNER_PREFIX}{alice.id}"
    await add(database, me, "plain", "nothing about owners here")
    saying = await add(database, me, "says", f"the word {owner_word} written out")

    results = await search.search(database, principal=me, request=Request(query=owner_word))
    assert [result.memory.id for result in results] == [saying.id]
    assert await find(database, owner_word) == {saying.id}


async def test_search_counts_access_without_events(database: Database, me: Principal) -> None:
    memory = await add(database, me, "k", "mango")
    before = await _event_count(database)
    for expected in (1, 2):
        [result] = await search.search(database, principal=me, request=Request(query="mango"))
        assert result.memory.access_count == expected
        assert result.memory.last_accessed_at is not None
    assert await _event_count(database) == before
    async with database.read() as session:
        stored = await session.get(LongTermMemory, memory.id)
        assert stored is not None and stored.access_count == 2


async def _event_count(database: Database) -> int:
    async with database.read() as session:
        return len((await session.execute(select(MemoryEvent.id))).all())


async def test_search_filters_by_namespace_and_tags_and_limit(
    database: Database, me: Principal
) -> None:
    a = await add(database, me, "a", "plum", namespace="fruit/stone", tags=["sweet", "red"])
    await add(database, me, "b", "plum", namespace="fruit/stone", tags=["sweet"])
    await add(database, me, "c", "plum", namespace="veg", tags=["sweet", "red"])

    def request(**fields: object) -> Request:
        return Request(query="plum", **fields)  # type: ignore[arg-type]

    found = await search.search(
        database, principal=me, request=request(namespace="fruit/", tags=["RED", "sweet"])
    )
    assert [result.memory.id for result in found] == [a.id]
    assert len(await search.search(database, principal=me, request=request(limit=2))) == 2


async def test_admins_search_for_a_named_user_others_cannot(database: Database) -> None:
    async with database.read() as session:
        alice = await make_user(session, username="alice")
        bob = await make_user(session, username="bob")
        admin = await make_user(session, username="root", is_admin=True)
    bobs = await add(database, Principal.of_user(bob), "k", "secret plan")
    as_admin = Principal.of_user(admin)
    found = await search.search(
        database, principal=as_admin, request=Request(query="plan"), user="bob"
    )
    assert [result.memory.id for result in found] == [bobs.id]
    assert await search.search(database, principal=as_admin, request=Request(query="plan")) == []
    for name in ("bob", "nobody"):
        with pytest.raises(NotFound):
            await search.search(
                database,
                principal=Principal.of_user(alice),
                request=Request(query="plan"),
                user=name,
            )


# --- SQLite's two plans for tag and text filters ------------------------------------------


@pytest.mark.parametrize("sort", ["-updated_at", "updated_at", "-importance", "created_at"])
async def test_walking_the_sort_index_finds_the_same_pages(
    database: Database, monkeypatch: pytest.MonkeyPatch, sort: str
) -> None:
    """Common matches walk the sort index, rare ones sort the matches: same pages either way."""
    async with database.read() as session:
        alice = await make_user(session, username="alice")
    me = Principal.of_user(alice)
    words = ["red", "green", "blue"]
    for n in range(40):
        await add(
            database,
            me,
            f"k{n}",
            f"{words[n % 3]} {words[n % 2]} item",
            tags=[words[n % 3], "all"] if n % 4 else [],
            importance=(n % 5) / 4,
        )
    queries = [
        BrowseQuery(q="red", sort=sort, limit=7),  # 14 rows: two pages and a bit
        BrowseQuery(q="green blue", sort=sort, limit=7),
        BrowseQuery(tag=["red"], sort=sort, limit=7),
        BrowseQuery(tag=["red", "blue"], tags_mode="any", sort=sort, limit=7),
        BrowseQuery(tag=["red", "all"], tags_mode="all", q="item", sort=sort, limit=7),
    ]

    async def pages(query: BrowseQuery) -> list[list[int]]:
        found: list[list[int]] = []
        counts = set()
        while True:
            page = await browse(database, principal=OPERATOR, query=query, signer=SIGNER)
            found.append([memory.id for memory in page.items if memory.id is not None])
            counts.add(page.count)
            if page.next_cursor is None:
                assert counts == {sum(len(ids) for ids in found)}, query
                return found
            query = query.model_copy(update={"cursor": page.next_cursor})

    for query in queries:
        monkeypatch.setattr(browse_plan, "WALK_THRESHOLD", 10**9)
        sorted_matches = await pages(query)
        monkeypatch.setattr(browse_plan, "WALK_THRESHOLD", 1)
        walked = await pages(query)
        assert walked == sorted_matches, query
        assert walked[0], query
