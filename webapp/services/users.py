"""Users: creation with argon2 password hashes, lookup by name."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from webapp.errors import Conflict, NotFound
from webapp.models import User, UserCreate
from webapp.services.principal import Principal

UNUSABLE_PASSWORD = "!"
"""password_hash of users created by an import: no password verifies against it."""

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    """An argon2id hash of password."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when password matches the hash; False for a wrong one or an unusable hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def create_user(session: AsyncSession, *, data: UserCreate) -> User:
    """Create a user from validated input; Conflict if the username is taken."""
    user = User(
        username=data.username,
        email=data.email,
        is_admin=data.is_admin,
        is_active=data.is_active,
        password_hash=hash_password(data.password),
    )
    session.add(user)
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise Conflict(f"user {data.username!r} already exists") from exc
    return user


async def get_user_by_username(session: AsyncSession, *, username: str) -> User:
    """The user called username; NotFound otherwise."""
    user = (
        await session.execute(select(User).where(col(User.username) == username))
    ).scalar_one_or_none()
    if user is None:
        raise NotFound(f"no user named {username!r}")
    return user


async def count_admins(session: AsyncSession) -> int:
    """How many active admin users exist (serve says how to create the first)."""
    query = select(func.count()).select_from(User).where(col(User.is_admin), col(User.is_active))
    return int((await session.execute(query)).scalar_one())


async def visible_user_id(session: AsyncSession, principal: Principal, username: str) -> int | None:
    """The id of the user named username if principal may see their memories, else None.

    An ordinary user sees only themselves: another user's name is as absent as an unknown one.
    """
    query = select(col(User.id)).where(col(User.username) == username)
    user_id = (await session.execute(query)).scalar_one_or_none()
    if user_id is None or (not principal.is_admin and user_id != principal.user_id):
        return None
    return user_id
