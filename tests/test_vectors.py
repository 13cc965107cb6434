"""Memory vectors stay true to the content on every write path (services/vectors.py and
the queue triggers), on both databases; `memory-admin embed` resumes after a kill; the
model never reaches for a network."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import orjson
import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api_support import Agent, memory
from tests.cli_support import invoke_cli
from webapp import embeddings
from webapp.db import Database
from webapp.models import (
    EmbeddingQueue,
    LongTermMemory,
    MemoryCreate,
    MemoryEmbedding,
    MemoryUpdate,
    VectorCount,
)
from webapp.services import memories, vectors
from webapp.services.principal import Principal
from webapp.types import utcnow

from .factories import make_user

_e = MemoryEmbedding.__table__.c  # type: ignore[attr-defined]
_q = EmbeddingQueue.__table__.c  # type: ignore[attr-defined]
_m = LongTermMemory.__table__.c  # type: ignore[attr-defined]
_n = VectorCount.__table__.c  # type: ignore[attr-defined]


@pytest.fixture
async def me(database: Database) -> Principal:
    async with database.read() as session:
        return Principal.of_user(await make_user(session, username="alice"))


async def drain_all(database: Database) -> None:
    while await vectors.drain(database):
        pass


async def check_vectors(database: Database) -> None:
    """After draining: one vector per memory, made of its current content; no queue;
    each user's vector count as the triggers keep it is the true one."""
    await drain_all(database)
    async with database.read() as session:
        rows = (await session.execute(select(_m.id, _m.content))).all()
        stored = {
            row.memory_id: row.vector
            for row in await session.execute(select(_e.memory_id, _e.vector))
        }
        queued = (await session.execute(select(_q.memory_id))).all()
        true_counts = dict(
            (await session.execute(select(_e.user_id, func.count()).group_by(_e.user_id))).all()
        )
        kept_counts = dict((await session.execute(select(_n.user_id, _n.added - _n.removed))).all())
    assert not queued
    assert set(stored) == {row.id for row in rows}
    assert {user: n for user, n in kept_counts.items() if n} == true_counts
    if rows:
        expected = embeddings.get_embedder().embed([row.content for row in rows])
        found = embeddings.unpack_many([stored[row.id] for row in rows])
        assert np.all(np.sum(expected * found, axis=1) > 0.999)


async def queued_ids(database: Database) -> set[int]:
    async with database.read() as session:
        return set((await session.execute(select(_q.memory_id))).scalars().all())


async def test_every_write_path_leaves_true_vectors(database: Database, me: Principal) -> None:
    first = await memories.remember(
        database, principal=me, data=MemoryCreate(namespace="n", key="a", content="Likes tea.")
    )
    other = await memories.remember(
        database, principal=me, data=MemoryCreate(namespace="n", key="b", content="Has a cat.")
    )
    await check_vectors(database)
    memory_id = first.memory.id
    assert memory_id is not None and other.memory.id is not None

    # The same content again: nothing to embed.
    await memories.remember(
        database, principal=me, data=MemoryCreate(namespace="n", key="a", content="Likes tea.")
    )
    assert await queued_ids(database) == set()
    # New content by upsert, then by edit: the old vector goes at once.
    await memories.remember(
        database, principal=me, data=MemoryCreate(namespace="n", key="a", content="Likes coffee.")
    )
    assert await queued_ids(database) == {memory_id}
    await check_vectors(database)
    await memories.update_memory(
        database, principal=me, memory_id=memory_id, changes=MemoryUpdate(content="Likes cocoa.")
    )
    await check_vectors(database)
    # Tags, importance, delete and restore leave the content and its vector alone.
    await memories.update_memory(
        database, principal=me, memory_id=memory_id, changes=MemoryUpdate(tags=["drinks"])
    )
    deleted = await memories.delete_memory(database, principal=me, memory_id=other.memory.id)
    assert await queued_ids(database) == set()
    await memories.restore_memory(database, principal=me, memory_id=other.memory.id)
    assert await queued_ids(database) == set() and deleted.is_deleted
    await check_vectors(database)
    # Purge removes vector and queue entry with the memory.
    await memories.update_memory(
        database, principal=me, memory_id=memory_id, changes=MemoryUpdate(content="Likes milk.")
    )
    await memories.delete_memory(database, principal=me, memory_id=memory_id)
    assert await memories.purge_deleted(database, principal=Principal.operator()) == 1
    await check_vectors(database)


async def test_a_raw_update_of_content_queues_the_memory(database: Database, me: Principal) -> None:
    """Whatever changes the content (a DBA's UPDATE too) drops the old vector."""
    made = await memories.remember(
        database, principal=me, data=MemoryCreate(namespace="n", key="a", content="Old text.")
    )
    await drain_all(database)
    async with database.write() as session:
        await session.execute(
            update(LongTermMemory).where(_m.id == made.memory.id).values(content="New text.")
        )
    assert await queued_ids(database) == {made.memory.id}
    await check_vectors(database)


async def test_content_changed_while_embedding_is_not_given_the_old_vector(
    database: Database, me: Principal, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = await memories.remember(
        database, principal=me, data=MemoryCreate(namespace="n", key="a", content="First.")
    )
    real_embed = vectors.embed_many

    async def embed_then_edit(texts: list[str], *, background: bool = False) -> list[bytes]:
        packed = await real_embed(texts, background=background)
        async with database.write() as session:
            await session.execute(
                update(LongTermMemory).where(_m.id == made.memory.id).values(content="Second.")
            )
        return packed

    monkeypatch.setattr(vectors, "embed_many", embed_then_edit)
    assert await vectors.drain(database) == 0
    monkeypatch.setattr(vectors, "embed_many", real_embed)
    await check_vectors(database)


async def test_set_based_updates_of_other_columns_keep_vectors(
    database: Database, me: Principal
) -> None:
    """Bulk actions write tags, importance, expiry and deletion in one UPDATE each: no
    content, so no vector is dropped or queued."""
    for key in ("a", "b", "c"):
        await memories.remember(
            database,
            principal=me,
            data=MemoryCreate(namespace="n", key=key, content=f"Item {key}."),
        )
    await drain_all(database)
    async with database.read() as session:
        before = sorted((await session.execute(select(_e.seq))).scalars().all())
    async with database.write() as session:
        await session.execute(update(LongTermMemory).values(importance=0.9, tags=["x"]))
    async with database.read() as session:
        after = sorted((await session.execute(select(_e.seq))).scalars().all())
    assert before == after and await queued_ids(database) == set()


async def test_an_agent_finds_what_it_just_wrote_by_meaning(ann: Agent) -> None:
    """The search embeds the user's newest writes itself, before comparing."""
    response = await ann.client.put(
        "/memories", json=memory(key="pet", content="Has a golden retriever named Biscuit.")
    )
    assert response.status_code == 201, response.text
    found = await ann.client.post("/search", json={"query": "which pet does she own"})
    items = found.json()["items"]
    assert [item["key"] for item in items] == ["pet"]
    assert items[0]["score_components"]["semantic"] == 1.0


def _embedded(database_url: str) -> int:
    """Vectors written so far in a SQLite file, read with the standard library."""
    import sqlite3

    path = database_url.split("///", 1)[1]
    with sqlite3.connect(path) as connection:
        return int(connection.execute("SELECT count(*) FROM memory_embedding").fetchone()[0])


@pytest.mark.slow
async def test_embed_resumes_after_being_killed(
    database: Database, me: Principal, database_url: str, tmp_path: Path
) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("the kill is the same on both; SQLite's file is read without a server")
    for number in range(120):
        await memories.remember(
            database,
            principal=me,
            data=MemoryCreate(
                namespace="bulk", key=f"k{number}", content=f"Memory {number} about tea."
            ),
        )
    env = {**os.environ, "DATABASE_URL": database_url, "SECRET_KEY": "cli-test-secret-key"}
    command = [sys.executable, "-m", "webapp.cli", "embed", "--batch", "5"]
    process = subprocess.Popen(command, env=env, cwd=tmp_path, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _embedded(database_url) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = _embedded(database_url)
    assert 10 <= partial < 120, partial
    finished = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, check=True)
    assert f"Embedded {120 - partial} memories" in finished.stdout.decode()
    await check_vectors(database)


def test_the_model_loads_with_no_network_and_hub_offline() -> None:
    """Nothing is fetched: with every socket refused and HF_HUB_OFFLINE=1 set, the model
    loads from the installed packages and embeds."""
    script = (
        "import socket\n"
        "def refuse(*a, **k): raise OSError('network is off in this test')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "from webapp.embeddings import Embedder\n"
        "vector = Embedder().embed_one('hello there')\n"
        "assert vector.shape == (384,) and abs(float((vector * vector).sum()) - 1) < 1e-4\n"
        "print('ok')\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


async def test_the_background_embedder_keeps_moving_under_steady_traffic(
    database: Database, me: Principal
) -> None:
    """With requests never pausing, the app's embedder still works, a little at a time."""

    class NeverQuiet:
        batches = 0

        async def quiet(self) -> bool:
            self.batches += 1
            await asyncio.sleep(0)
            return False

    for number in range(5):
        await memories.remember(
            database,
            principal=me,
            data=MemoryCreate(namespace="n", key=f"k{number}", content=f"Fact number {number}."),
        )
    busy = NeverQuiet()
    embedder = asyncio.create_task(vectors.drain_forever(database, yield_to=busy))
    try:
        async with asyncio.timeout(60):
            while await queued_ids(database):
                await asyncio.sleep(0.05)
    finally:
        embedder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await embedder
    assert busy.batches >= 5 // vectors.BUSY_BATCH
    await check_vectors(database)


def test_a_text_reaches_the_model_unpadded() -> None:
    """The model's cost grows with its input, and the tokenizer file pads to 128 tokens:
    a one-word query must cost three tokens, not 128 (bench_embed.py measures the time)."""
    embedder = embeddings.get_embedder()
    assert len(embedder._tokenizer.encode("night").ids) == 3  # [CLS] night [SEP]
    long_text = "word " * 400
    assert len(embedder._tokenizer.encode(long_text).ids) == embeddings.MAX_TOKENS


@pytest.mark.skipif(sys.platform != "linux", reason="thread priorities are Linux's")
def test_background_embedding_runs_at_the_lowest_cpu_priority() -> None:
    """The app's own embedder yields the CPU to requests: its threads run at nice 19, the
    caller's thread keeps its priority, and the vectors are the same."""
    caller = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    embedder = embeddings.get_embedder()
    texts = ["Drinks coffee black", "Allergic to peanuts", "Lives in Lisbon"]
    background = embedder.embed(texts, background=True)
    assert np.allclose(background, embedder.embed(texts), atol=1e-6)
    priority_of = embedder._pool(background=True).submit(
        lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    )
    assert priority_of.result() == 19
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == caller


def test_embed_refuses_when_semantic_search_is_off(
    db: AsyncEngine, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vectors, "enabled", lambda: False)
    result = invoke_cli("embed", database_url=database_url, cwd=tmp_path)
    assert result.code != 0
    assert "semantic search is off" in result.stderr


async def test_import_queues_new_and_changed_memories(database: Database, me: Principal) -> None:
    """An import's new rows and its updates of content get vectors like any write."""
    import io

    from webapp.services import transfer
    from webapp.settings import Settings

    await memories.remember(
        database, principal=me, data=MemoryCreate(namespace="n", key="a", content="Old words.")
    )
    await drain_all(database)
    lines = b"\n".join(
        orjson.dumps({"user": "alice", "namespace": "n", "key": key, "content": content})
        for key, content in (("a", "New words."), ("b", "Another memory."))
    )
    report = await transfer.import_jsonl(
        database, source=io.BytesIO(lines), settings=Settings(secret_key="test")
    )
    assert (report.created, report.updated) == (1, 1)
    assert len(await queued_ids(database)) == 2
    await check_vectors(database)


async def test_erasing_a_user_removes_their_vectors(database: Database, me: Principal) -> None:
    from webapp.services.erase import erase_user

    async with database.read() as session:
        admin = Principal.of_user(await make_user(session, username="root", is_admin=True))
    await memories.remember(
        database, principal=me, data=MemoryCreate(namespace="n", key="a", content="Some text.")
    )
    await memories.remember(
        database, principal=me, data=MemoryCreate(namespace="n", key="b", content="Queued.")
    )
    await vectors.drain(database, batch=1)
    await erase_user(database, principal=admin, username="alice", confirm_username="alice")
    async with database.read() as session:
        assert (await session.execute(select(_e.seq))).first() is None
        assert (await session.execute(select(_q.seq))).first() is None


async def test_a_raw_upsert_of_a_queued_memory_queues_it_again(
    database: Database, me: Principal
) -> None:
    """An UPSERT (ON CONFLICT DO UPDATE) that changes the content of a memory already in
    the queue re-queues it; it used to fail with a UNIQUE error on SQLite."""
    made = await memories.remember(
        database, principal=me, data=MemoryCreate(namespace="n", key="a", content="One.")
    )
    upsert = text(
        "INSERT INTO long_term_memory (user_id, namespace, key, content, tags, importance,"
        " access_count, is_deleted, version, created_at, updated_at)"
        " VALUES (:user, 'n', 'a', :content, '[]', 0.5, 0, false, 1, :now, :now)"
        " ON CONFLICT (user_id, namespace, key) DO UPDATE SET content = excluded.content"
    )
    for content in ("Two.", "Three."):
        async with database.write() as session:
            await session.execute(upsert, {"user": me.user_id, "content": content, "now": utcnow()})
    assert await queued_ids(database) == {made.memory.id}
    await check_vectors(database)


async def test_an_edit_in_progress_does_not_hold_up_the_vector_of_its_memory(
    database: Database, me: Principal
) -> None:
    """While an edit holds a memory (memories._locked), the embedder can still write
    the memory's vector: its foreign key check must not wait for the edit. When it did
    (FOR UPDATE), an upsert and the embedder deadlocked under load on PostgreSQL, and the
    upsert answered 500. (SQLite has one writer at a time: nothing to check there.)"""
    if database.dialect != "postgresql":
        pytest.skip("row locks are PostgreSQL's")
    made = await memories.remember(
        database, principal=me, data=MemoryCreate(namespace="n", key="held", content="Text.")
    )
    memory_id = made.memory.id
    await drain_all(database)
    vector = embeddings.pack(embeddings.get_embedder().embed(["Text."])[0])
    async with database.write() as session:  # the embedder's turn: write a new vector
        await session.execute(MemoryEmbedding.__table__.delete())  # type: ignore[attr-defined]
    async with database.write() as editing:
        assert await memories._locked(editing, _m.id == memory_id) is not None
        async with database.engine.connect() as embedder:
            await embedder.exec_driver_sql("SET lock_timeout = '2s'")
            inserted = await embedder.execute(
                text(
                    "INSERT INTO memory_embedding (memory_id, user_id, model, vector) "
                    "VALUES (:m, :u, 'test', :v) RETURNING seq"
                ),
                {"m": memory_id, "u": me.user_id, "v": vector},
            )
            assert inserted.scalar() is not None
            await embedder.rollback()
