"""Small builders for test data, so tests say only what matters to them."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from webapp.db import Database
from webapp.models import ApiToken, LongTermMemory, MemoryCreate, User
from webapp.services.tokens import create_token
from webapp.services.users import hash_password
from webapp.types import utcnow

PASSWORD = "correct horse"
"""The password make_user gives every user."""

_counter = 0


def _next() -> int:
    global _counter
    _counter += 1
    return _counter


@cache
def password_hash(password: str = PASSWORD) -> str:
    """A real argon2 hash of password, made once per run with the app's own hasher.

    Hashing costs about 145 ms (argon2's point), and the suite makes hundreds of
    users. Users sharing one hash, salt included, changes nothing a test can see:
    logging in still verifies a real argon2 hash.
    """
    return hash_password(password)


async def make_user(
    session: AsyncSession, *, username: str | None = None, is_admin: bool = False
) -> User:
    """A saved user with the password PASSWORD ('correct horse')."""
    user = User(
        username=username or f"user{_next()}",
        password_hash=password_hash(),
        is_admin=is_admin,
    )
    session.add(user)
    await session.commit()
    return user


async def make_memory(
    session: AsyncSession,
    *,
    user: User,
    namespace: str = "facts",
    key: str | None = None,
    content: str = "The user likes green tea.",
    tags: list[str] | None = None,
    importance: float = 0.5,
    expires_at: datetime | None = None,
    **extra: Any,
) -> LongTermMemory:
    """A saved memory, validated through MemoryCreate as an agent's write would be."""
    data = MemoryCreate(
        namespace=namespace,
        key=key or f"key-{_next()}",
        content=content,
        tags=tags or [],
        importance=importance,
        expires_at=expires_at,
    )
    assert user.id is not None
    now = utcnow()
    memory = LongTermMemory(
        **data.model_dump(), user_id=user.id, created_at=now, updated_at=now, **extra
    )
    session.add(memory)
    await session.commit()
    return memory


async def make_memories_for_filters(session: AsyncSession, user: User) -> None:
    """One memory of user's for each thing the filters tell apart: `tea` (food/drinks,
    tag likes, importance 0.9), `cake` (food, tags likes and sweet, 0.2, expiring in 3
    days), `old` (work, expired), `gone` (work, deleted), `read` (work, 0.4, read 4 times)."""
    now = utcnow()
    await make_memory(
        session,
        user=user,
        key="tea",
        namespace="food/drinks",
        tags=["likes"],
        content="green tea in the morning",
        importance=0.9,
    )
    await make_memory(
        session,
        user=user,
        key="cake",
        namespace="food",
        tags=["likes", "sweet"],
        content="chocolate cake",
        importance=0.2,
        expires_at=now + timedelta(days=3),
    )
    await make_memory(
        session,
        user=user,
        key="old",
        namespace="work",
        content="a lapsed note",
        expires_at=now - timedelta(days=1),
    )
    await make_memory(
        session, user=user, key="gone", namespace="work", is_deleted=True, deleted_at=now
    )
    await make_memory(
        session,
        user=user,
        key="read",
        namespace="work",
        content="often read",
        importance=0.4,
        access_count=4,
        last_accessed_at=now,
    )


async def make_token(session: AsyncSession, *, user: User, name: str) -> tuple[ApiToken, str]:
    """An API token of user (through the service, on the session's database) and its secret."""
    engine = session.bind
    assert isinstance(engine, AsyncEngine)
    return await create_token(Database(engine), user=user, name=name)
