"""Small builders for test data, so tests say only what matters to them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from webapp.models import LongTermMemory, MemoryCreate, User
from webapp.services.users import hash_password
from webapp.types import utcnow

_counter = 0


def _next() -> int:
    global _counter
    _counter += 1
    return _counter


async def make_user(
    session: AsyncSession, *, username: str | None = None, is_admin: bool = False
) -> User:
    """A saved user with the password 'correct horse'."""
    user = User(
        username=username or f"user{_next()}",
        password_hash=hash_password("correct horse"),
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
