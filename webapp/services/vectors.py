"""Memory vectors: kept current by database triggers and a queue, made outside writes.

The model takes 10 to 40 ms a memory on two cores, longer than a whole upsert, so no
write waits for it. Triggers on long_term_memory put each new memory, and each memory
whose content changes, in `embedding_queue`, and delete the vector of the old content,
whatever wrote it (the services, an import, a DBA's UPDATE). `drain` empties the queue:
it reads a batch, embeds it in a worker thread (onnxruntime releases the GIL), then
writes the vectors in a short transaction, each only if its memory's queue entry is
still the one it read (a memory edited meanwhile is queued anew and gets the vector of
its new content next time).

Three callers drain: every app process in the background (`drain_forever`), search for
the searching user's few newest writes before it compares vectors (so an agent finds
what it wrote a moment ago), and `memory-admin embed` for a whole database (which then
brings the near-duplicate pairs of the users it embedded for up to date, so that the
review page does not compare a backlog when it is first opened).

With SEMANTIC_SEARCH=false, or without the model's packages, nothing is embedded and
search ranks by text alone (`enabled()` says which); the queue just waits.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache, partial
from typing import Protocol

import anyio
from sqlalchemy import ScalarSelect, delete, func, insert, select
from sqlalchemy.exc import DBAPIError, OperationalError

from webapp import embeddings
from webapp.db import Database
from webapp.models import EmbeddingQueue, LongTermMemory, MemoryEmbedding
from webapp.settings import get_settings

log = logging.getLogger(__name__)

_vectors = MemoryEmbedding.__table__  # type: ignore[attr-defined]
_queue = EmbeddingQueue.__table__  # type: ignore[attr-defined]
_memory = LongTermMemory.__table__.c  # type: ignore[attr-defined]
_CACHE_SIZE = 256

TABLE = "memory_embedding"
QUEUE = "embedding_queue"
# Delete, then insert: an INSERT OR REPLACE inside a trigger takes the conflict policy
# of the statement that fired it, so an UPSERT (ON CONFLICT DO UPDATE) of a memory that
# was already queued failed with a UNIQUE error instead of queueing it anew.
_ENQUEUE_SQLITE = (
    f"DELETE FROM {QUEUE} WHERE memory_id = new.id; "
    f"INSERT INTO {QUEUE}(memory_id, user_id) VALUES (new.id, new.user_id);"
)
SQLITE_TRIGGERS = {
    "long_term_memory_ai_vector": f"""
        CREATE TRIGGER long_term_memory_ai_vector AFTER INSERT ON long_term_memory BEGIN
            {_ENQUEUE_SQLITE}
        END""",
    "long_term_memory_au_vector": f"""
        CREATE TRIGGER long_term_memory_au_vector AFTER UPDATE OF content ON long_term_memory
        WHEN old.content IS NOT new.content BEGIN
            DELETE FROM {TABLE} WHERE memory_id = new.id;
            {_ENQUEUE_SQLITE}
        END""",
}
POSTGRES_DDL = (
    f"""
    CREATE FUNCTION queue_new_vectors() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO {QUEUE}(memory_id, user_id) SELECT id, user_id FROM inserted
        ON CONFLICT (memory_id) DO NOTHING;
        RETURN NULL;
    END $$""",
    """
    CREATE TRIGGER long_term_memory_ai_vector AFTER INSERT ON long_term_memory
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT
    EXECUTE FUNCTION queue_new_vectors()""",
    f"""
    CREATE FUNCTION queue_changed_vector() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM {TABLE} WHERE memory_id = NEW.id;
        INSERT INTO {QUEUE}(memory_id, user_id) VALUES (NEW.id, NEW.user_id)
        ON CONFLICT (memory_id) DO UPDATE SET seq = nextval('{QUEUE}_seq_seq');
        RETURN NULL;
    END $$""",
    """
    CREATE TRIGGER long_term_memory_au_vector AFTER UPDATE OF content ON long_term_memory
    FOR EACH ROW WHEN (OLD.content IS DISTINCT FROM NEW.content)
    EXECUTE FUNCTION queue_changed_vector()""",
)
"""Inserts are queued per statement on PostgreSQL (an import's COPY queues its rows in
one INSERT ... SELECT); a content change per row, and only when the content differs."""
QUEUE_EVERYTHING = (
    f"INSERT INTO {QUEUE}(memory_id, user_id) SELECT id, user_id FROM long_term_memory "
    f"WHERE id NOT IN (SELECT memory_id FROM {TABLE}) ORDER BY id"
)


def create_statements(dialect: str) -> list[str]:
    """The queue triggers' DDL for dialect (migration 0009)."""
    return list(POSTGRES_DDL) if dialect == "postgresql" else list(SQLITE_TRIGGERS.values())


def drop_statements(dialect: str) -> list[str]:
    """Undo create_statements."""
    if dialect == "postgresql":
        return [
            "DROP TRIGGER IF EXISTS long_term_memory_ai_vector ON long_term_memory",
            "DROP TRIGGER IF EXISTS long_term_memory_au_vector ON long_term_memory",
            "DROP FUNCTION IF EXISTS queue_new_vectors()",
            "DROP FUNCTION IF EXISTS queue_changed_vector()",
        ]
    return [f"DROP TRIGGER IF EXISTS {name}" for name in SQLITE_TRIGGERS]


@lru_cache(maxsize=1)
def enabled() -> bool:
    """True when memories get vectors and search uses them: the setting is on and the
    model loads. The reason it is off is logged once."""
    if not get_settings().semantic_search:
        return False
    try:
        embeddings.get_embedder()
    except embeddings.EmbeddingUnavailable as exc:
        log.warning("semantic search is off: %s", exc)
        return False
    return True


async def embed_many(texts: Sequence[str], *, background: bool = False) -> list[bytes]:
    """Packed vectors of texts, in order, computed in worker threads (of the lowest CPU
    priority when background)."""
    embed = partial(embeddings.get_embedder().embed, list(texts), background=background)
    vectors = await anyio.to_thread.run_sync(embed)
    return [embeddings.pack(vector) for vector in vectors]


_queries: OrderedDict[str, embeddings.Vectors] = OrderedDict()


async def query_vector(query: str) -> embeddings.Vectors:
    """The unit vector of a search query; the last few are kept, for a search asks twice
    (candidates, then its neighbours) and agents repeat themselves."""
    vector = _queries.get(query)
    if vector is None:
        vector = await anyio.to_thread.run_sync(embeddings.get_embedder().embed_one, query)
        _queries[query] = vector
        while len(_queries) > _CACHE_SIZE:
            _queries.popitem(last=False)
    _queries.move_to_end(query)
    return vector


def waiting(user_id: int, at_most: int) -> ScalarSelect[int]:
    """How many of user_id's memories wait for a vector, counted up to at_most (a walk of
    the queue's user index that stops there), as a scalar subquery."""
    queued = select(_queue.c.seq).where(_queue.c.user_id == user_id).limit(at_most)
    return select(func.count()).select_from(queued.subquery()).scalar_subquery()


async def pending(db: Database, *, user_id: int | None = None) -> int:
    """How many memories wait for a vector (of one user, or of everyone)."""
    query = select(func.count()).select_from(_queue)
    if user_id is not None:
        query = query.where(_queue.c.user_id == user_id)
    async with db.read() as session:
        return int((await session.execute(query)).scalar_one())


async def drain(
    db: Database, *, batch: int = 64, user_id: int | None = None, background: bool = False
) -> int:
    """Embed the oldest `batch` queued memories (of user_id, or anyone's) and write their
    vectors; the number written. A memory queued again meanwhile is left for later.
    background: embed at the lowest CPU priority (embed_many)."""
    if not enabled():
        return 0
    wanted = (
        select(_queue.c.seq, _queue.c.memory_id, _queue.c.user_id, _memory.content)
        .join(LongTermMemory, _memory.id == _queue.c.memory_id)
        .order_by(_queue.c.seq)
        .limit(batch)
    )
    if user_id is not None:
        wanted = wanted.where(_queue.c.user_id == user_id)
    async with db.read() as session:
        rows = (await session.execute(wanted)).all()
    if not rows:
        return 0
    packed = await embed_many([row.content for row in rows], background=background)
    by_seq = {row.seq: (row, vector) for row, vector in zip(rows, packed, strict=True)}
    async with db.write() as session:
        taken = (
            (
                await session.execute(
                    delete(_queue).where(_queue.c.seq.in_(by_seq)).returning(_queue.c.seq)
                )
            )
            .scalars()
            .all()
        )
        if not taken:
            return 0
        fresh = [by_seq[seq] for seq in taken]
        await session.execute(
            delete(_vectors).where(_vectors.c.memory_id.in_([row.memory_id for row, _ in fresh]))
        )
        await session.execute(
            insert(_vectors),
            [
                {
                    "memory_id": row.memory_id,
                    "user_id": row.user_id,
                    "model": embeddings.MODEL_ID,
                    "vector": vector,
                }
                for row, vector in fresh
            ],
        )
    return len(taken)


BACKGROUND_BATCH = 8
"""The background embedder's batch when no request is in flight: one text per core at a
time, and its write transaction (which an upsert on SQLite waits for) stays a
millisecond long."""
BUSY_BATCH = 2
"""Its batch under steady traffic (no pause in the requests for two seconds): one text
per core, about 25 ms, so it keeps moving while requests rarely meet it."""


class Yield(Protocol):
    """What the background embedder waits for before each batch (webapp.traffic.Traffic):
    True when the app is quiet, False when it gave up waiting."""

    async def quiet(self) -> bool: ...


async def drain_forever(
    db: Database, *, idle_seconds: float = 0.5, yield_to: Yield | None = None
) -> None:
    """The app's background embedder: drain while there is work, look again after
    idle_seconds when there is none. The model runs at the lowest CPU priority, and
    between requests (yield_to): requests are answered first. Errors are logged and
    retried, never raised."""
    while True:
        batch = BACKGROUND_BATCH
        if yield_to is not None and not await yield_to.quiet():
            batch = BUSY_BATCH
        try:
            written = await drain(db, batch=batch, background=True)
        except (OperationalError, DBAPIError) as exc:
            log.warning("background embedding failed, retrying: %s", exc)
            written = 0
        if not written:
            await asyncio.sleep(idle_seconds)
