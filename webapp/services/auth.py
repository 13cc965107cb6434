"""Logging in to the admin app: passwords, the login throttle and server-side sessions.

The throttle and the sessions live in the database, so any number of workers and hosts
share them. After LOCK_AFTER failed logins for one username or one address
within WINDOW, that key is locked for LOCK_FOR: every attempt gets LoginThrottled, even
with the right password. An unknown user and a wrong password fail the same way, after
the same password-hashing work.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from webapp.db import Database
from webapp.errors import MemoryAdminError
from webapp.models import LoginThrottle, User, WebSession
from webapp.services.filters import AT_EXECUTION
from webapp.services.users import hash_password, verify_password
from webapp.types import utcnow

LOCK_AFTER = 5
WINDOW = timedelta(minutes=15)
LOCK_FOR = timedelta(minutes=15)
TOUCH_EVERY = timedelta(minutes=1)
"""last_seen_at is written at most this often per session, not on every request."""

_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))
"""Verified against when the username is unknown, so both failures cost the same time."""


class LoginFailed(MemoryAdminError):
    """Wrong username or password (never says which)."""

    status_code = 400


class LoginThrottled(MemoryAdminError):
    """Too many failed logins for this username or address; try again later."""

    status_code = 429


@dataclass(frozen=True)
class SignedIn:
    """A new session: the secret goes into the cookie, and only its hash is stored."""

    user: User
    secret: str
    session: WebSession


def _session_id(secret: str) -> str:
    """A session's key in web_session: the SHA-256 of the cookie's 256-bit random secret.

    Sessions are found by an equality on this hash in the database, not by a
    constant-time comparison, and that is safe: an attacker cannot steer the hash of
    what they send toward a stored one, nor get the secret back from a hash
    (SECURITY.md, "Comparing secrets").
    """
    return hashlib.sha256(secret.encode()).hexdigest()


def throttle_keys(username: str, address: str) -> list[str]:
    """The two keys a login attempt counts against."""
    # A NUL spelled out: PostgreSQL refuses one in a string, and no username holds a '\'.
    name = username.strip().casefold().replace("\x00", "\\x00")
    return [f"user:{name}"[:200], f"address:{address}"[:200]]


async def log_in(
    db: Database, *, username: str, password: str, address: str, session_hours: int
) -> SignedIn:
    """Check the throttle and the password, then start a new session.

    Raises LoginThrottled while a key is locked, LoginFailed for a wrong username or
    password (counting the failure against both keys).
    """
    now = utcnow()
    keys = throttle_keys(username, address)
    async with db.read() as session:
        await _refuse_if_locked(session, keys, now)
        user = None
        if "\x00" not in username:  # no user's name holds one (nor may a query on PostgreSQL)
            user = (
                await session.execute(select(User).where(col(User.username) == username.strip()))
            ).scalar_one_or_none()
    password_hash = user.password_hash if user is not None else _DUMMY_HASH
    if not verify_password(password_hash, password) or user is None or not user.is_active:
        await _count_failure(db, keys, now)
        raise LoginFailed("Wrong username or password.")
    assert user.id is not None
    secret = secrets.token_urlsafe(32)
    web_session = WebSession(
        id=_session_id(secret),
        user_id=user.id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(hours=session_hours),
    )
    async with db.write() as session:
        await session.execute(delete(LoginThrottle).where(col(LoginThrottle.key) == keys[0]))
        await session.execute(delete(WebSession).where(col(WebSession.expires_at) <= now))
        await session.execute(
            delete(LoginThrottle).where(
                col(LoginThrottle.window_started_at) <= now - WINDOW,
                (col(LoginThrottle.locked_until).is_(None))
                | (col(LoginThrottle.locked_until) <= now),
            )
        )
        session.add(web_session)
    return SignedIn(user=user, secret=secret, session=web_session)


async def _refuse_if_locked(session: AsyncSession, keys: list[str], now: datetime) -> None:
    query = select(col(LoginThrottle.key)).where(
        col(LoginThrottle.key).in_(keys), col(LoginThrottle.locked_until) > now
    )
    if (await session.execute(query)).first() is not None:
        raise LoginThrottled("Too many failed logins. Wait 15 minutes before trying again.")


async def _count_failure(db: Database, keys: list[str], now: datetime) -> None:
    """Add one failure to each key in SQL; the LOCK_AFTER-th in a window locks the key."""
    insert = postgresql_insert if db.dialect == "postgresql" else sqlite_insert
    async with db.write() as session:
        for key in keys:
            await session.execute(
                insert(LoginThrottle)
                .values(key=key, failures=0, window_started_at=now)
                .on_conflict_do_nothing(index_elements=["key"])
            )
            row = (
                await session.execute(
                    select(LoginThrottle).where(col(LoginThrottle.key) == key).with_for_update()
                )
            ).scalar_one()
            if row.window_started_at <= now - WINDOW:
                row.failures, row.window_started_at, row.locked_until = 0, now, None
            row.failures += 1
            if row.failures >= LOCK_AFTER:
                row.locked_until = now + LOCK_FOR


class SessionUser(NamedTuple):
    """The user a live session belongs to, as pages need them."""

    id: int
    username: str
    is_admin: bool


@dataclass(frozen=True)
class LiveSession:
    """A live session of an active user: who it is and the CSRF token its forms carry."""

    user: SessionUser
    csrf_token: str


_users = User.__table__  # type: ignore[attr-defined]
_sessions = WebSession.__table__  # type: ignore[attr-defined]
_SESSION_USER = (
    select(
        _users.c.id,
        _users.c.username,
        _users.c.is_admin,
        _sessions.c.csrf_token,
        _sessions.c.last_seen_at,
    )
    .join(_sessions, _sessions.c.user_id == _users.c.id)
    .where(
        _sessions.c.id == bindparam("session_id"),
        _sessions.c.expires_at > AT_EXECUTION,
        _users.c.is_active,
    )
)
"""Built once, and read as plain columns: every page and action looks its session up."""


async def session_user(db: Database, *, secret: str) -> LiveSession | None:
    """The active user and live session a cookie secret belongs to, or None."""
    now = utcnow()
    session_id = _session_id(secret)
    async with db.read_connection() as connection:  # Core: no ORM session to set up
        found = (await connection.execute(_SESSION_USER, {"session_id": session_id})).first()
    if found is None:
        return None
    user_id, username, is_admin, csrf_token, last_seen_at = found
    if last_seen_at <= now - TOUCH_EVERY:
        async with db.write() as session:
            await session.execute(
                update(WebSession).where(col(WebSession.id) == session_id).values(last_seen_at=now)
            )
    return LiveSession(
        user=SessionUser(id=user_id, username=username, is_admin=is_admin), csrf_token=csrf_token
    )


async def end_session(db: Database, *, secret: str) -> None:
    """Log out: delete the session, so its cookie stops working wherever it was copied."""
    async with db.write() as session:
        await session.execute(delete(WebSession).where(col(WebSession.id) == _session_id(secret)))
