"""The data model on both databases: the original design's ten points and the extra tables."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest
from sqlalchemy import bindparam, false, func, select, text, update
from sqlalchemy.exc import IntegrityError, InvalidRequestError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import selectinload
from sqlmodel import SQLModel

from tests.factories import make_memory, make_user
from webapp import models
from webapp.db import create_sessionmaker
from webapp.models import (
    ApiToken,
    EventAction,
    LongTermMemory,
    MemoryCreate,
    MemoryEvent,
    MemoryState,
    User,
)
from webapp.types import UTCDateTime, utcnow

ModelT = TypeVar("ModelT", bound=SQLModel)
PLUS_TWO = timezone(timedelta(hours=2))


async def reread(session: AsyncSession, model: type[ModelT], pk: Any) -> ModelT:
    """Load a row from the database itself, not from the session's identity map."""
    session.expunge_all()
    row = await session.get(model, pk)
    assert row is not None, f"{model.__name__} {pk} is not in the database"
    return row


async def count_memories(session: AsyncSession, *conditions: Any) -> int:
    """How many long_term_memory rows match conditions."""
    query = select(func.count()).select_from(LongTermMemory).where(*conditions)
    return (await session.execute(query)).scalar_one()


def assert_utc(value: datetime | None, name: str) -> None:
    """Assert value is an aware datetime in UTC (not naive, not another offset)."""
    assert isinstance(value, datetime), f"{name} is {value!r}"
    assert value.tzinfo is not None, f"{name} came back naive"
    assert value.utcoffset() == timedelta(0), f"{name} has offset {value.utcoffset()}"
    assert value.tzinfo == UTC, f"{name} has tzinfo {value.tzinfo!r}"


# --- 1. creating memories ------------------------------------------------------------------


async def test_create_memory_round_trips(session: AsyncSession) -> None:
    """A memory is stored with its fields and the server-owned defaults."""
    user = await make_user(session)
    memory = await make_memory(
        session,
        user=user,
        namespace="projects/apollo",
        key="launch date",
        content="Launch is on the 16th. Ünïcödé and emoji 🚀 survive.",
        importance=0.8,
    )
    assert memory.id is not None

    stored = await reread(session, LongTermMemory, memory.id)
    assert stored.user_id == user.id
    assert stored.namespace == "projects/apollo"
    assert stored.key == "launch date"
    assert stored.content == "Launch is on the 16th. Ünïcödé and emoji 🚀 survive."
    assert stored.importance == 0.8
    assert stored.tags == []
    assert stored.expires_at is None
    assert stored.access_count == 0
    assert stored.last_accessed_at is None
    assert stored.is_deleted is False
    assert stored.deleted_at is None
    assert stored.version == 1
    assert stored.state is MemoryState.active


async def test_create_memory_defaults_without_factory(session: AsyncSession) -> None:
    """A table row built from MemoryCreate alone gets importance 0.5 and fresh UTC timestamps."""
    user = await make_user(session)
    before = utcnow()
    data = MemoryCreate(namespace="facts", key="k", content="c")
    memory = LongTermMemory(**data.model_dump(), user_id=user.id)
    session.add(memory)
    await session.commit()

    stored = await reread(session, LongTermMemory, memory.id)
    assert stored.importance == 0.5
    assert before <= stored.created_at <= utcnow()
    assert before <= stored.updated_at <= utcnow()


async def test_memory_needs_an_existing_user(session: AsyncSession) -> None:
    """user_id is a real foreign key on both databases (SQLite runs with foreign_keys=ON)."""
    session.add(LongTermMemory(namespace="facts", key="k", content="c", user_id=987_654))
    with pytest.raises(IntegrityError):
        await session.commit()
    await session.rollback()
    assert await count_memories(session) == 0


# --- 2. unique (user_id, namespace, key) ---------------------------------------------------


async def test_duplicate_key_in_same_namespace_is_refused(session: AsyncSession) -> None:
    """A second memory with the same user, namespace and key violates the unique constraint."""
    user = await make_user(session)
    user_id = user.id
    await make_memory(session, user=user, namespace="facts", key="tea")

    session.add(LongTermMemory(namespace="facts", key="tea", content="dup", user_id=user_id))
    with pytest.raises(IntegrityError):
        await session.commit()
    await session.rollback()
    assert await count_memories(session, LongTermMemory.user_id == user_id) == 1


async def test_nfc_equivalent_keys_collide(session: AsyncSession) -> None:
    """Keys are NFC-normalised before storing, so decomposed and composed forms are one key."""
    user = await make_user(session)
    user_id = user.id
    await make_memory(session, user=user, key="caf\u00e9")
    with pytest.raises(IntegrityError):
        await make_memory(session, user=user, key="cafe\u0301")
    await session.rollback()
    assert await count_memories(session, LongTermMemory.user_id == user_id) == 1


async def test_same_key_elsewhere_is_allowed(session: AsyncSession) -> None:
    """The same key in another namespace, or for another user, is a different memory."""
    alice = await make_user(session)
    bob = await make_user(session)
    await make_memory(session, user=alice, namespace="facts", key="tea")
    await make_memory(session, user=alice, namespace="prefs", key="tea")
    await make_memory(session, user=bob, namespace="facts", key="tea")
    await make_memory(session, user=alice, namespace="facts", key="Tea")  # keys are case-sensitive

    assert await count_memories(session, LongTermMemory.key == "tea") == 3
    assert await count_memories(session) == 4


# --- 3. expiration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "expired", "state"),
    [
        (timedelta(days=-1), True, MemoryState.expired),
        (timedelta(seconds=-1), True, MemoryState.expired),
        (timedelta(hours=1), False, MemoryState.active),
        (timedelta(days=365), False, MemoryState.active),
        (None, False, MemoryState.active),
    ],
    ids=["day-ago", "second-ago", "in-an-hour", "in-a-year", "never"],
)
async def test_expiry_after_round_trip(
    session: AsyncSession, offset: timedelta | None, expired: bool, state: MemoryState
) -> None:
    """is_expired and state, computed on a memory read back from the database."""
    user = await make_user(session)
    expires_at = None if offset is None else utcnow() + offset
    memory = await make_memory(session, user=user, expires_at=expires_at)

    stored = await reread(session, LongTermMemory, memory.id)
    assert stored.expires_at == expires_at
    assert stored.is_expired is expired
    assert stored.state is state


def test_ttl_boundary(monkeypatch: pytest.MonkeyPatch) -> None:
    """expires_at == now is already expired (TTL 0); one microsecond later is not yet."""
    now = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
    monkeypatch.setattr(models, "utcnow", lambda: now)

    def memory(expires_at: datetime | None) -> LongTermMemory:
        """An unsaved memory expiring at expires_at."""
        return LongTermMemory(namespace="n", key="k", content="c", user_id=1, expires_at=expires_at)

    assert memory(now).is_expired is True
    assert memory(now).state is MemoryState.expired
    assert memory(now - timedelta(microseconds=1)).is_expired is True
    assert memory(now + timedelta(microseconds=1)).is_expired is False
    assert memory(now + timedelta(microseconds=1)).state is MemoryState.active
    # The same instant in another offset is the same boundary.
    assert memory(now.astimezone(PLUS_TWO)).is_expired is True
    assert memory(None).is_expired is False


async def test_expiry_filter_in_sql_matches_property(session: AsyncSession) -> None:
    """`expires_at <= now` in SQL picks exactly the memories whose is_expired is True."""
    user = await make_user(session)
    now = utcnow()
    offsets = [timedelta(hours=-2), timedelta(seconds=-5), timedelta(seconds=5), None]
    for index, offset in enumerate(offsets):
        expires_at = None if offset is None else now + offset
        await make_memory(session, user=user, key=f"k{index}", expires_at=expires_at)

    query = select(LongTermMemory.key).where(LongTermMemory.expires_at <= now)
    expired_in_sql = set((await session.execute(query)).scalars())
    session.expunge_all()
    everything = (await session.execute(select(LongTermMemory))).scalars().all()
    expired_in_python = {memory.key for memory in everything if memory.is_expired}
    assert expired_in_sql == {"k0", "k1"}
    assert expired_in_python == expired_in_sql


# --- 4. the user relationship --------------------------------------------------------------


async def test_user_memories_with_selectinload(session: AsyncSession) -> None:
    """User.memories lists exactly that user's memories when eagerly loaded."""
    alice = await make_user(session, username="alice")
    bob = await make_user(session, username="bob")
    for key in ("a1", "a2", "a3"):
        await make_memory(session, user=alice, key=key)
    await make_memory(session, user=bob, key="b1")
    session.expunge_all()

    query = select(User).options(selectinload(User.memories)).order_by(User.username)
    users = (await session.execute(query)).scalars().all()
    assert [user.username for user in users] == ["alice", "bob"]
    assert sorted(memory.key for memory in users[0].memories) == ["a1", "a2", "a3"]
    assert [memory.key for memory in users[1].memories] == ["b1"]
    assert all(memory.user_id == users[0].id for memory in users[0].memories)


async def test_memory_user_with_selectinload(session: AsyncSession) -> None:
    """LongTermMemory.user is the owning user when eagerly loaded (back_populates both ways)."""
    alice = await make_user(session, username="alice")
    memory = await make_memory(session, user=alice)
    session.expunge_all()

    query = (
        select(LongTermMemory)
        .where(LongTermMemory.id == memory.id)
        .options(selectinload(LongTermMemory.user).selectinload(User.memories))
    )
    loaded = (await session.execute(query)).scalar_one()
    assert loaded.user is not None
    assert loaded.user.username == "alice"
    assert loaded.user.id == alice.id
    assert [m.id for m in loaded.user.memories] == [loaded.id]
    assert loaded.user.memories[0] is loaded


async def test_relationships_refuse_lazy_loading(session: AsyncSession) -> None:
    """Unloaded relationships raise at once instead of doing hidden I/O under async."""
    alice = await make_user(session)
    memory = await make_memory(session, user=alice)
    session.expunge_all()

    loaded_memory = (
        await session.execute(select(LongTermMemory).where(LongTermMemory.id == memory.id))
    ).scalar_one()
    with pytest.raises(InvalidRequestError, match="lazy='raise'"):
        _ = loaded_memory.user
    loaded_user = (await session.execute(select(User).where(User.id == alice.id))).scalar_one()
    with pytest.raises(InvalidRequestError, match="lazy='raise'"):
        _ = loaded_user.memories


# --- 5. access tracking --------------------------------------------------------------------


async def record_access(session: AsyncSession, memory_ids: list[int], at: datetime) -> None:
    """Count one access for each memory, in SQL (never read-modify-write), and commit."""
    await session.execute(
        update(LongTermMemory)
        .where(LongTermMemory.id.in_(memory_ids))  # type: ignore[union-attr]
        .values(access_count=LongTermMemory.access_count + 1, last_accessed_at=at)
    )
    await session.commit()


async def test_access_count_incremented_in_sql(session: AsyncSession) -> None:
    """access_count goes up by one per access and last_accessed_at is stored, per memory."""
    user = await make_user(session)
    read = await make_memory(session, user=user, key="read")
    unread = await make_memory(session, user=user, key="unread")
    assert read.id is not None and unread.id is not None
    first = utcnow()
    await record_access(session, [read.id], first)
    second = first + timedelta(seconds=3)
    await record_access(session, [read.id], second)
    await record_access(session, [read.id], second + timedelta(seconds=1))

    stored = await reread(session, LongTermMemory, read.id)
    assert stored.access_count == 3
    assert stored.last_accessed_at == second + timedelta(seconds=1)
    assert_utc(stored.last_accessed_at, "last_accessed_at")
    untouched = await reread(session, LongTermMemory, unread.id)
    assert untouched.access_count == 0
    assert untouched.last_accessed_at is None


async def test_concurrent_accesses_are_all_counted(db: AsyncEngine) -> None:
    """Concurrent increments from separate sessions lose nothing (the + 1 happens in SQL)."""
    sessionmaker = create_sessionmaker(db)
    async with sessionmaker() as session:
        memory = await make_memory(session, user=await make_user(session))
    assert memory.id is not None

    async def access() -> None:
        """One agent reading the memory in its own session."""
        async with sessionmaker() as own:
            await record_access(own, [memory.id], utcnow())

    await asyncio.gather(*(access() for _ in range(8)))
    async with sessionmaker() as session:
        assert (await reread(session, LongTermMemory, memory.id)).access_count == 8


# --- 6. soft delete ------------------------------------------------------------------------


async def test_soft_delete_keeps_the_row(session: AsyncSession) -> None:
    """A soft-deleted memory stays in the table with is_deleted and deleted_at set."""
    user = await make_user(session)
    kept = await make_memory(session, user=user, key="kept")
    gone = await make_memory(session, user=user, key="gone")
    deleted_at = utcnow()
    gone.is_deleted = True
    gone.deleted_at = deleted_at
    await session.commit()

    stored = await reread(session, LongTermMemory, gone.id)
    assert stored.is_deleted is True
    assert stored.deleted_at == deleted_at
    assert stored.state is MemoryState.deleted
    assert await count_memories(session) == 2
    live = select(LongTermMemory.key).where(LongTermMemory.is_deleted == false())
    assert list((await session.execute(live)).scalars()) == [kept.key]


async def test_deleted_wins_over_expired(session: AsyncSession) -> None:
    """A memory both soft-deleted and past expiry is in state deleted."""
    user = await make_user(session)
    memory = await make_memory(session, user=user, expires_at=utcnow() - timedelta(days=1))
    memory.is_deleted = True
    memory.deleted_at = utcnow()
    await session.commit()

    stored = await reread(session, LongTermMemory, memory.id)
    assert stored.is_expired is True
    assert stored.state is MemoryState.deleted


async def test_is_deleted_server_default(session: AsyncSession) -> None:
    """A row inserted without is_deleted (e.g. by raw SQL) is not deleted."""
    user = await make_user(session)
    await session.execute(
        text(
            "INSERT INTO long_term_memory (user_id, namespace, key, content, tags, importance,"
            " access_count, version, created_at, updated_at)"
            " VALUES (:user_id, 'facts', 'raw', 'c', '[]', 0.5, 0, 1, :now, :now)"
        ).bindparams(bindparam("now", type_=UTCDateTime())),
        {"user_id": user.id, "now": datetime(2030, 1, 1, 0, 0, tzinfo=UTC)},
    )
    await session.commit()
    raw = await session.execute(select(LongTermMemory).where(LongTermMemory.key == "raw"))
    assert raw.scalar_one().is_deleted is False


# --- 7. namespaces -------------------------------------------------------------------------


async def test_namespaces_are_queried_separately(session: AsyncSession) -> None:
    """One user's memories in several namespaces come back per namespace, scoped to that user."""
    alice = await make_user(session)
    bob = await make_user(session)
    layout = {"facts": ["f1", "f2"], "projects/apollo": ["a1"], "projects/zeus": ["z1", "z2"]}
    for namespace, keys in layout.items():
        for key in keys:
            await make_memory(session, user=alice, namespace=namespace, key=key)
    await make_memory(session, user=bob, namespace="facts", key="bob-fact")

    for namespace, keys in layout.items():
        query = (
            select(LongTermMemory.key)
            .where(LongTermMemory.user_id == alice.id, LongTermMemory.namespace == namespace)
            .order_by(LongTermMemory.key)
        )
        assert list((await session.execute(query)).scalars()) == keys

    namespaces = select(LongTermMemory.namespace).where(LongTermMemory.user_id == alice.id)
    found = sorted(set((await session.execute(namespaces)).scalars()))
    assert found == sorted(layout)
    # A namespace prefix is not a match: 'projects' alone holds nothing.
    assert await count_memories(session, LongTermMemory.namespace == "projects") == 0


# --- 8. ordering by importance -------------------------------------------------------------


async def test_order_by_importance_desc_with_ties(session: AsyncSession) -> None:
    """importance DESC, ties broken by id, and floats come back exactly as written."""
    user = await make_user(session)
    importances = [("a", 0.2), ("b", 0.9), ("c", 0.3), ("d", 0.9), ("e", 0.0), ("f", 1.0)]
    for key, importance in importances:
        await make_memory(session, user=user, key=key, importance=importance)

    query = select(LongTermMemory.key, LongTermMemory.importance).order_by(
        LongTermMemory.importance.desc(),  # type: ignore[attr-defined]
        LongTermMemory.id,
    )
    rows = [tuple(row) for row in (await session.execute(query)).all()]
    assert rows == [("f", 1.0), ("b", 0.9), ("d", 0.9), ("c", 0.3), ("a", 0.2), ("e", 0.0)]


# --- 9. tags -------------------------------------------------------------------------------


async def test_tags_are_normalised_and_read_back_as_lists(session: AsyncSession) -> None:
    """MemoryCreate trims, lowercases and de-duplicates; the JSON column gives a list back."""
    user = await make_user(session)
    raw = [" Python ", "python", "AI", "ai ", "Ünïcode", "two words"]
    memory = await make_memory(session, user=user, tags=raw)
    plain = await make_memory(session, user=user)

    stored = await reread(session, LongTermMemory, memory.id)
    assert isinstance(stored.tags, list)
    assert stored.tags == ["python", "ai", "ünïcode", "two words"]
    assert (await reread(session, LongTermMemory, plain.id)).tags == []
    column = select(LongTermMemory.tags).where(LongTermMemory.id == memory.id)
    assert (await session.execute(column)).scalar_one() == ["python", "ai", "ünïcode", "two words"]


async def test_tags_update_is_persisted(session: AsyncSession) -> None:
    """Assigning a new list to tags is saved (a JSON column only notices reassignment)."""
    user = await make_user(session)
    memory = await make_memory(session, user=user, tags=["old"])
    memory.tags = ["new", "newer"]
    await session.commit()
    assert (await reread(session, LongTermMemory, memory.id)).tags == ["new", "newer"]


# --- 10. timezone-aware datetimes ----------------------------------------------------------


async def test_every_datetime_reads_back_in_utc(session: AsyncSession) -> None:
    """All datetime columns of every table come back aware, in UTC, on both databases."""
    user = await make_user(session)
    memory = await make_memory(session, user=user, expires_at=utcnow() + timedelta(days=1))
    memory.is_deleted = True
    memory.deleted_at = utcnow()
    memory.last_accessed_at = utcnow()
    token = ApiToken(user_id=user.id, name="t", token_hash="h" * 64, last_used_at=utcnow())
    token.revoked_at = utcnow()
    event = MemoryEvent(memory_id=memory.id, user_id=user.id, actor="a", action=EventAction.create)
    session.add_all([token, event])
    await session.commit()

    stored = await reread(session, LongTermMemory, memory.id)
    for name in ("created_at", "updated_at", "expires_at", "deleted_at", "last_accessed_at"):
        assert_utc(getattr(stored, name), f"long_term_memory.{name}")
    assert_utc((await reread(session, User, user.id)).created_at, "users.created_at")
    stored_token = await reread(session, ApiToken, token.id)
    for name in ("created_at", "last_used_at", "revoked_at"):
        assert_utc(getattr(stored_token, name), f"api_token.{name}")
    assert_utc((await reread(session, MemoryEvent, event.id)).created_at, "memory_event.created_at")
    # Column-only (Core) selects go through the same type.
    columns = select(LongTermMemory.created_at, LongTermMemory.expires_at)
    for value in (await session.execute(columns)).one():
        assert_utc(value, "selected column")


async def test_offset_datetime_is_stored_as_the_same_utc_instant(session: AsyncSession) -> None:
    """12:00+02:00 is stored as 10:00 UTC: it reads back so, and compares so in SQL."""
    user = await make_user(session)
    local = datetime(2030, 1, 1, 12, 0, tzinfo=PLUS_TWO)
    ten_utc = datetime(2030, 1, 1, 10, 0, tzinfo=UTC)
    # Straight onto the table model, so the column type (not MemoryCreate) does the work.
    memory = LongTermMemory(namespace="n", key="k", content="c", user_id=user.id, expires_at=local)
    session.add(memory)
    await session.commit()

    stored = await reread(session, LongTermMemory, memory.id)
    assert stored.expires_at == ten_utc
    assert_utc(stored.expires_at, "expires_at")
    assert stored.expires_at is not None and stored.expires_at.hour == 10
    # On SQLite a value stored as local text would match neither comparison.
    assert await count_memories(session, LongTermMemory.expires_at == ten_utc) == 1
    later = datetime(2030, 1, 1, 10, 30, tzinfo=UTC)
    assert await count_memories(session, LongTermMemory.expires_at > later) == 0
    assert await count_memories(session, LongTermMemory.expires_at == local) == 1


async def test_memory_create_offset_is_utc_in_the_database(session: AsyncSession) -> None:
    """An offset timestamp string given to MemoryCreate is stored as its UTC instant."""
    user = await make_user(session)
    memory = await make_memory(
        session,
        user=user,
        expires_at=MemoryCreate(
            namespace="n", key="k", content="c", expires_at="2030-01-01T05:00:00-05:00"
        ).expires_at,
    )
    stored = await reread(session, LongTermMemory, memory.id)
    assert stored.expires_at == datetime(2030, 1, 1, 10, 0, tzinfo=UTC)
    assert_utc(stored.expires_at, "expires_at")


async def test_naive_datetime_is_refused_by_the_column(session: AsyncSession) -> None:
    """A naive datetime never reaches the database, in an INSERT or in an UPDATE."""
    user = await make_user(session)
    user_id = user.id
    naive = datetime(2030, 1, 1, 10, 0)
    session.add(
        LongTermMemory(namespace="n", key="k", content="c", user_id=user_id, expires_at=naive)
    )
    with pytest.raises(StatementError, match="naive datetime"):
        await session.commit()
    await session.rollback()
    assert await count_memories(session) == 0

    memory = await make_memory(session, user=await reread(session, User, user_id))
    memory_id = memory.id  # a rollback expires the object; keep its id at hand
    with pytest.raises(StatementError, match="naive datetime"):
        await session.execute(
            update(LongTermMemory)
            .where(LongTermMemory.id == memory_id)
            .values(last_accessed_at=naive)
        )
    await session.rollback()
    assert (await reread(session, LongTermMemory, memory_id)).last_accessed_at is None


# --- users, tokens, events -----------------------------------------------------------------


async def test_deleting_a_user_cascades(session: AsyncSession) -> None:
    """Deleting a user removes their memories, tokens and events; other users keep theirs."""
    doomed = await make_user(session)
    other = await make_user(session)
    doomed_id, other_id = doomed.id, other.id
    memory = await make_memory(session, user=doomed)
    await make_memory(session, user=other)
    session.add(ApiToken(user_id=doomed_id, name="t", token_hash="a" * 64))
    session.add(MemoryEvent(memory_id=memory.id, user_id=doomed_id, actor="x", action="create"))
    await session.commit()

    await session.delete(doomed)
    await session.commit()

    assert await count_memories(session, LongTermMemory.user_id == doomed_id) == 0
    assert await count_memories(session, LongTermMemory.user_id == other_id) == 1
    for model in (ApiToken, MemoryEvent):
        remaining = select(func.count()).select_from(model).where(model.user_id == doomed_id)
        assert (await session.execute(remaining)).scalar_one() == 0


async def test_deleting_an_actor_keeps_the_event(session: AsyncSession) -> None:
    """An event outlives the admin or token that acted: the actor columns become NULL."""
    owner = await make_user(session)
    admin = await make_user(session, is_admin=True)
    memory = await make_memory(session, user=owner)
    token = ApiToken(user_id=admin.id, name="admin-agent", token_hash="b" * 64)
    session.add(token)
    await session.commit()
    event = MemoryEvent(
        memory_id=memory.id,
        user_id=owner.id,
        actor="admin",
        actor_user_id=admin.id,
        actor_token_id=token.id,
        action=EventAction.update,
    )
    session.add(event)
    await session.commit()

    await session.delete(admin)
    await session.commit()

    stored = await reread(session, MemoryEvent, event.id)
    assert stored.user_id == owner.id
    assert stored.actor_user_id is None
    assert stored.actor_token_id is None


async def test_api_token_round_trips(session: AsyncSession) -> None:
    """An ApiToken is stored and read back; token hashes are unique."""
    user = await make_user(session)
    token = ApiToken(user_id=user.id, name="laptop agent", token_hash="c" * 64)
    session.add(token)
    await session.commit()

    stored = await reread(session, ApiToken, token.id)
    assert (stored.user_id, stored.name, stored.token_hash) == (user.id, "laptop agent", "c" * 64)
    assert stored.last_used_at is None and stored.revoked_at is None
    assert_utc(stored.created_at, "api_token.created_at")

    session.add(ApiToken(user_id=stored.user_id, name="copy", token_hash="c" * 64))
    with pytest.raises(IntegrityError):
        await session.commit()
    await session.rollback()


async def test_memory_event_round_trips(session: AsyncSession) -> None:
    """A MemoryEvent keeps its action and its JSON changes, with non-ASCII text intact."""
    user = await make_user(session)
    memory = await make_memory(session, user=user)
    changes = {"content": {"old": "thé", "new": "café"}, "tags": {"old": [], "new": ["a"]}}
    event = MemoryEvent(
        memory_id=memory.id,
        user_id=user.id,
        actor=f"user:{user.username}",
        actor_user_id=user.id,
        action=EventAction.update,
        changes=changes,
    )
    session.add(event)
    await session.commit()

    stored = await reread(session, MemoryEvent, event.id)
    assert stored.action == EventAction.update
    assert EventAction(stored.action) is EventAction.update
    assert stored.changes == changes
    assert stored.memory_id == memory.id
    assert stored.actor == f"user:{user.username}"
    assert stored.actor_token_id is None


async def test_event_survives_its_memory(session: AsyncSession) -> None:
    """memory_id is not a foreign key: purging a memory keeps its audit trail."""
    user = await make_user(session)
    memory = await make_memory(session, user=user)
    event = MemoryEvent(memory_id=memory.id, user_id=user.id, actor="a", action=EventAction.purge)
    session.add(event)
    await session.commit()
    await session.delete(memory)
    await session.commit()

    assert await count_memories(session) == 0
    assert (await reread(session, MemoryEvent, event.id)).memory_id == memory.id


async def test_usernames_are_unique(session: AsyncSession) -> None:
    """Two users cannot share a username."""
    await make_user(session, username="alice")
    with pytest.raises(IntegrityError):
        await make_user(session, username="alice")
    await session.rollback()
