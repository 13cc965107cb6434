"""Memory vectors: computing them off the event loop and writing them with the content.

The model runs in a worker thread (onnxruntime releases the GIL), never inside a write
transaction when it can be helped: a writer calls `prepare(content)` before it opens
its transaction, and `vector_of(content)` inside it then finds the vector ready in a
small per-process cache keyed by the text.

With SEMANTIC_SEARCH=false, or without the model's packages, nothing is embedded and
search ranks by text alone (`enabled()` says which).
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from functools import lru_cache

import anyio
from sqlalchemy import delete, insert
from sqlalchemy.ext.asyncio import AsyncSession

from webapp import embeddings
from webapp.models import MemoryEmbedding
from webapp.settings import get_settings

log = logging.getLogger(__name__)

_table = MemoryEmbedding.__table__  # type: ignore[attr-defined]

TABLE = "memory_embedding"
STALE_TRIGGER = "long_term_memory_au_vector"
_POSTGRES_FUNCTION = "forget_stale_vector"
SQLITE_TRIGGERS = {
    STALE_TRIGGER: f"""
        CREATE TRIGGER {STALE_TRIGGER} AFTER UPDATE OF content ON long_term_memory
        WHEN old.content IS NOT new.content BEGIN
            DELETE FROM {TABLE} WHERE memory_id = new.id;
        END""",
}
POSTGRES_DDL = (
    f"""
    CREATE FUNCTION {_POSTGRES_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM {TABLE} WHERE memory_id = NEW.id;
        RETURN NULL;
    END $$""",
    f"""
    CREATE TRIGGER {STALE_TRIGGER} AFTER UPDATE OF content ON long_term_memory
    FOR EACH ROW WHEN (OLD.content IS DISTINCT FROM NEW.content)
    EXECUTE FUNCTION {_POSTGRES_FUNCTION}()""",
)
"""A vector never outlives the content it was made of: whatever changes a memory's
content (a service, a DBA's UPDATE) deletes its vector in the same statement; the
service then writes the new one (`write`), and `memory-admin embed` fills any gap."""


def create_statements(dialect: str) -> list[str]:
    """The stale-vector trigger's DDL for dialect (migration 0009)."""
    return list(POSTGRES_DDL) if dialect == "postgresql" else list(SQLITE_TRIGGERS.values())


def drop_statements(dialect: str) -> list[str]:
    """Undo create_statements."""
    if dialect == "postgresql":
        return [
            f"DROP TRIGGER IF EXISTS {STALE_TRIGGER} ON long_term_memory",
            f"DROP FUNCTION IF EXISTS {_POSTGRES_FUNCTION}()",
        ]
    return [f"DROP TRIGGER IF EXISTS {name}" for name in SQLITE_TRIGGERS]


_CACHE_SIZE = 256
_ready: OrderedDict[bytes, bytes] = OrderedDict()


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


def _text_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


async def embed_many(texts: Sequence[str]) -> list[bytes]:
    """Packed vectors of texts, in order, computed in a worker thread."""
    vectors = await anyio.to_thread.run_sync(embeddings.get_embedder().embed, list(texts))
    return [embeddings.pack(vector) for vector in vectors]


async def prepare(texts: Iterable[str | None]) -> None:
    """Compute and keep the vectors of texts about to be written (None is skipped)."""
    if not enabled():
        return
    missing = [text for text in dict.fromkeys(texts) if text and _text_key(text) not in _ready]
    if not missing:
        return
    for text, packed in zip(missing, await embed_many(missing), strict=True):
        _ready[_text_key(text)] = packed
        _ready.move_to_end(_text_key(text))
    while len(_ready) > _CACHE_SIZE:
        _ready.popitem(last=False)


async def vector_of(text: str) -> bytes:
    """The packed vector of text: from `prepare` when it was called, else computed now."""
    packed = _ready.get(_text_key(text))
    if packed is None:
        (packed,) = await embed_many([text])
    return packed


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


async def write(session: AsyncSession, rows: Sequence[tuple[int, int, str]]) -> None:
    """Give each (memory_id, user_id, content) the vector of that content, replacing the
    one it had, in the caller's transaction. Flushes first: the content's own UPDATE
    must run before, or its trigger would delete the new vector."""
    if not rows or not enabled():
        return
    await session.flush()
    ids = [memory_id for memory_id, _, _ in rows]
    await session.execute(delete(_table).where(_table.c.memory_id.in_(ids)))
    values = [
        {
            "memory_id": memory_id,
            "user_id": user_id,
            "model": embeddings.MODEL_ID,
            "vector": await vector_of(content),
        }
        for memory_id, user_id, content in rows
    ]
    await session.execute(insert(_table), values)
