"""Semantic and hybrid search (services/search.py, vector_index.py), on both databases:
a question finds the memory that answers it without sharing a word, never one it must
not see, and the per-process vector cache follows every change to the vectors."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import delete, insert, select, update

from webapp import embeddings
from webapp.db import Database
from webapp.models import LongTermMemory, MemoryCreate, MemoryEmbedding
from webapp.models import SearchRequest as Request
from webapp.services import memories, search, vector_index, vectors
from webapp.services.principal import Principal
from webapp.types import utcnow

from .factories import make_user

PARAPHRASES = [
    ("what does the user drink in the afternoon", "Switched to decaf coffee after 3pm."),
    ("which pet does she own", "Has a golden retriever named Biscuit."),
    ("where is their home", "Lives in a small flat in Lisbon."),
    ("food allergies", "Gets hives after eating peanuts or shellfish."),
    ("what job do they have", "Works as a nurse at the children's hospital."),
    ("favourite sport to watch", "Never misses a Lakers basketball game on TV."),
]
"""A question and the memory that answers it, sharing no word (stemmed or not)."""
DISTRACTORS = [
    "Bought new running shoes last week.",
    "The meeting moved to Thursday.",
    "Prefers window seats on long flights.",
    "Reads science fiction before bed.",
]
_e = MemoryEmbedding.__table__.c  # type: ignore[attr-defined]


@pytest.fixture
async def me(database: Database) -> Principal:
    async with database.read() as session:
        return Principal.of_user(await make_user(session, username="alice"))


@pytest.fixture
async def bob(database: Database) -> Principal:
    async with database.read() as session:
        return Principal.of_user(await make_user(session, username="bob"))


async def add(
    database: Database, principal: Principal, key: str, content: str, **fields: object
) -> LongTermMemory:
    """Remember a memory and give it its vector, as the app's background embedder does."""
    data = MemoryCreate(
        namespace=fields.pop("namespace", "facts"), key=key, content=content, **fields
    )  # type: ignore[arg-type]
    memory = (await memories.remember(database, principal=principal, data=data)).memory
    assert memory.id is not None
    while await vectors.drain(database):
        pass
    return memory


async def ask(
    database: Database, principal: Principal, query: str, **fields: object
) -> list[search.ScoredMemory]:
    return await search.search(
        database, principal=principal, request=Request(query=query, **fields)
    )  # type: ignore[arg-type]


@pytest.fixture
async def facts(database: Database, me: Principal) -> dict[str, LongTermMemory]:
    found = {}
    for number, content in enumerate([answer for _, answer in PARAPHRASES] + DISTRACTORS):
        found[content] = await add(database, me, f"fact-{number}", content)
    return found


@pytest.mark.parametrize(("question", "answer"), PARAPHRASES)
async def test_a_question_finds_its_answer_without_a_shared_word(
    database: Database, me: Principal, facts: dict[str, LongTermMemory], question: str, answer: str
) -> None:
    results = await ask(database, me, question)
    assert results and results[0].memory.id == facts[answer].id, [r.memory.content for r in results]
    best = results[0].score_components
    assert best["text"] == 0.0 and best["semantic"] == 1.0
    for result in results:
        assert set(result.score_components) == {
            "text",
            "semantic",
            "importance",
            "recency",
            "access",
        }
        assert all(0.0 <= value <= 1.0 for value in result.score_components.values())


async def test_unrelated_memories_do_not_match(
    database: Database, me: Principal, facts: dict[str, LongTermMemory]
) -> None:
    """Only what holds a word of the query or is close in meaning comes back."""
    results = await ask(database, me, "quantum chromodynamics lecture notes")
    assert results == []


async def test_never_returns_what_the_searcher_must_not_see(
    database: Database, me: Principal, bob: Principal, facts: dict[str, LongTermMemory]
) -> None:
    question, answer = PARAPHRASES[1]
    theirs = await add(database, bob, "pet", "Owns a tabby cat called Miso.")
    gone = await add(database, me, "old-pet", "Had a hamster called Nibbles.")
    await memories.delete_memory(database, principal=me, memory_id=gone.id)  # type: ignore[arg-type]
    soon = await add(database, me, "pet-sitter", "A neighbour walks the dog on weekdays.")
    async with database.write() as session:
        await session.execute(
            update(LongTermMemory)
            .where(LongTermMemory.id == soon.id)  # type: ignore[arg-type]
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    found = {r.memory.id for r in await ask(database, me, question, limit=50)}
    assert facts[answer].id in found
    assert not found & {theirs.id, gone.id, soon.id}
    found_by_bob = {r.memory.id for r in await ask(database, bob, question, limit=50)}
    assert found_by_bob == {theirs.id}


async def test_namespace_and_tags_filter_semantic_matches(
    database: Database, me: Principal
) -> None:
    home = await add(database, me, "a", "Has a golden retriever named Biscuit.", namespace="home")
    await add(database, me, "b", "Has a golden retriever named Biscuit.", namespace="work")
    tagged = await add(
        database, me, "c", "Adopted a rescue greyhound.", namespace="work", tags=["pets"]
    )
    assert [
        r.memory.id for r in await ask(database, me, "which pet does she own", namespace="home")
    ] == [home.id]
    assert [
        r.memory.id for r in await ask(database, me, "which pet does she own", tags=["pets"])
    ] == [tagged.id]


async def test_a_neighbour_in_the_same_namespace_lifts_the_answer(
    database: Database, me: Principal
) -> None:
    """The reply written right after the matching question outranks an equally close
    memory elsewhere."""
    await add(
        database, me, "t1", "Melanie: how was the charity race for mental health?", namespace="chat"
    )
    reply = await add(
        database,
        me,
        "t2",
        "Caroline: I ran it in under an hour and raised money.",
        namespace="chat",
    )
    other = await add(
        database, me, "x", "Caroline: I ran in the park in under an hour.", namespace="notes"
    )
    ids = [
        r.memory.id for r in await ask(database, me, "What did Caroline do at the charity race?")
    ]
    assert ids.index(reply.id) < ids.index(other.id)


async def test_the_cache_follows_every_change_to_the_vectors(
    database: Database, me: Principal, facts: dict[str, LongTermMemory]
) -> None:
    question, answer = PARAPHRASES[3]
    assert (await ask(database, me, question))[0].memory.id == facts[answer].id
    # New content, new vector (the trigger drops the old one; the writer adds the new).
    changed = facts[answer]
    await memories.update_memory(
        database,
        principal=me,
        memory_id=changed.id,  # type: ignore[arg-type]
        changes=memories.MemoryUpdate(content="Collects vintage postcards."),
    )
    # The search embeds the edited memory itself: it is the user's only queued write.
    async with database.read() as session:
        left = (
            await session.execute(select(_e.memory_id).where(_e.memory_id == changed.id))
        ).first()
    assert left is None, "the old content's vector is gone with it"
    assert changed.id not in {r.memory.id for r in await ask(database, me, question)}
    newer = await add(database, me, "allergy", "Cannot eat gluten or dairy without getting sick.")
    assert (await ask(database, me, question))[0].memory.id == newer.id
    # A vector removed (purge, or content changed outside memory-admin): read in full.
    async with database.write() as session:
        await session.execute(delete(MemoryEmbedding).where(_e.memory_id == newer.id))
    assert newer.id not in {
        r.memory.id for r in await ask(database, me, question) if r.score_components["text"] == 0
    }
    async with database.read() as session:
        assert (
            await session.execute(select(_e.memory_id).where(_e.memory_id == newer.id))
        ).first() is None


@pytest.fixture
def full_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One item for each time the vector cache reads a user's vectors in full."""
    reads: list[int] = []
    build = vector_index._UserVectors.build

    def counting_build(*args: object) -> vector_index._UserVectors:
        reads.append(1)
        return build(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(vector_index._UserVectors, "build", counting_build)
    return reads


async def test_the_cache_reads_in_full_only_when_it_must(
    database: Database,
    me: Principal,
    facts: dict[str, LongTermMemory],
    full_reads: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """New vectors are applied; a few removed ones are tolerated (their memories are read
    back with the search's conditions); rows committed out of seq order, or too many
    removed, make the cache read the user's vectors again in full."""
    monkeypatch.setattr(vector_index, "STALE_SHARE", 0.2)
    index = vector_index.get_index()
    query = await vectors.query_vector("what job do they have")
    assert me.user_id is not None

    async def similarity_of(memory_id: int) -> float | None:
        return (
            (await index.similarities(database, me.user_id, query)).of({memory_id}).get(memory_id)
        )

    nurse = facts[PARAPHRASES[4][1]].id
    assert nurse is not None
    assert (await similarity_of(nurse) or 0) > 0.3 and len(full_reads) == 1
    newer = await add(database, me, "work", "Works night shifts in the emergency ward.")
    assert newer.id is not None and await similarity_of(newer.id) is not None
    assert len(full_reads) == 1, "a new vector is applied, not read with all the others"

    async with database.write() as session:
        seq, vector = (
            await session.execute(select(_e.seq, _e.vector).where(_e.memory_id == nurse))
        ).one()
        await session.execute(delete(MemoryEmbedding).where(_e.memory_id == nurse))
    await similarity_of(nurse)
    assert len(full_reads) == 1, "one removed vector of 11 is tolerated"

    async with database.write() as session:  # committed after a higher seq: out of order
        await session.execute(
            insert(MemoryEmbedding).values(
                seq=seq, memory_id=nurse, user_id=me.user_id, model="m", vector=vector
            )
        )
    assert await similarity_of(nurse) is not None and len(full_reads) == 2

    async with database.write() as session:
        await session.execute(delete(MemoryEmbedding).where(_e.user_id == me.user_id))
    assert await similarity_of(nurse) is None and len(full_reads) == 3


async def test_the_snapshot_holds_exactly_the_users_vectors(
    database: Database,
    me: Principal,
    facts: dict[str, LongTermMemory],
    full_reads: list[int],
) -> None:
    """The near-duplicate forest's vectors come from the cache: a replaced vector (an
    edit, embedded again) is applied without a full read, a removed one is never in it."""
    index = vector_index.get_index()
    assert me.user_id is not None

    async def stored() -> dict[int, bytes]:
        async with database.read() as session:
            rows = await session.execute(
                select(_e.memory_id, _e.vector).where(_e.user_id == me.user_id)
            )
            return dict(rows.all())

    async def check_exact() -> None:
        ids, matrix = await index.snapshot(database, me.user_id)  # type: ignore[arg-type]
        expected = await stored()
        assert sorted(ids.tolist()) == sorted(expected)
        for memory_id, row in zip(ids.tolist(), matrix, strict=True):
            assert row.tolist() == embeddings.unpack_many([expected[memory_id]])[0].tolist()

    await check_exact()
    assert len(full_reads) == 1
    nurse = facts[PARAPHRASES[4][1]]
    await add(database, me, nurse.key, "Works as a vet at the zoo.")
    await check_exact()
    assert len(full_reads) == 1, "a replaced vector accounts for its removal"

    async with database.write() as session:
        await session.execute(delete(MemoryEmbedding).where(_e.memory_id == nurse.id))
    await check_exact()
    assert len(full_reads) == 2, "a removed vector that nothing replaced: read in full"


async def test_searching_twice_does_not_snowball(
    database: Database, me: Principal, facts: dict[str, LongTermMemory]
) -> None:
    """Being returned counts as an access, and access lifts a memory a little: never past
    one that matches clearly better."""
    first = [r.memory.id for r in await ask(database, me, "what job do they have")]
    for _ in range(30):
        again = [r.memory.id for r in await ask(database, me, "what job do they have")]
    assert again[0] == first[0]


async def test_purge_removes_the_vectors(
    database: Database, me: Principal, facts: dict[str, LongTermMemory]
) -> None:
    victim = facts[PARAPHRASES[0][1]]
    await memories.delete_memory(database, principal=me, memory_id=victim.id)  # type: ignore[arg-type]
    assert await memories.purge_deleted(database, principal=Principal.operator()) == 1
    async with database.read() as session:
        left = (
            await session.execute(select(_e.memory_id).where(_e.memory_id == victim.id))
        ).first()
    assert left is None
    assert victim.id not in {r.memory.id for r in await ask(database, me, PARAPHRASES[0][0])}


async def test_similarities_computed_a_slice_at_a_time_are_every_vectors_cosine(
    database: Database,
    me: Principal,
    facts: dict[str, LongTermMemory],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The product runs in slices, letting the event loop turn between them: every
    vector still gets its own cosine with the query, the last partial slice included."""
    monkeypatch.setattr(vector_index, "PRODUCT_SLICE", 3)
    query = await vectors.query_vector("what job do they have")
    assert me.user_id is not None
    async with database.read() as session:
        rows = await session.execute(
            select(_e.memory_id, _e.vector).where(_e.user_id == me.user_id)
        )
        stored = {row.memory_id: row.vector for row in rows}
    assert len(stored) % 3 != 0, "the last slice should be a partial one"
    every = await vector_index.get_index().similarities(database, me.user_id, query)
    expected = {
        memory_id: float(embeddings.unpack_many([vector])[0] @ query)
        for memory_id, vector in stored.items()
    }
    assert every.of(set(stored)) == pytest.approx(expected, abs=1e-6)
