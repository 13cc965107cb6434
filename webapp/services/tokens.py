"""API tokens: the secret is shown once and only its SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import bindparam, or_, select, update
from sqlmodel import col

from webapp.db import Database
from webapp.errors import NotFound
from webapp.models import ApiToken, User
from webapp.services.principal import Principal
from webapp.types import utcnow

TOKEN_PREFIX = "mat_"
TOUCH_EVERY = timedelta(minutes=1)
"""last_used_at is written at most this often per token, not on every request."""

_tokens = ApiToken.__table__  # type: ignore[attr-defined]
_users = User.__table__  # type: ignore[attr-defined]
_TOKEN_USER = (
    select(_tokens.c.id, _tokens.c.last_used_at, _users.c.id, _users.c.username, _users.c.is_admin)
    .join(_users, _users.c.id == _tokens.c.user_id)
    .where(
        _tokens.c.token_hash == bindparam("token_hash"),
        _tokens.c.revoked_at.is_(None),
        _users.c.is_active,
    )
)
"""Built once, read as plain columns: every API request looks its token up."""


def hash_token(secret: str) -> str:
    """The stored form of a token secret.

    A fast hash is right here: secrets are 256 random bits, so there is nothing to
    brute-force, and every API request has to look its token up.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_token(db: Database, *, user: User, name: str) -> tuple[ApiToken, str]:
    """Create a token for user; returns it with the secret, which is not kept anywhere."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    assert user.id is not None
    token = ApiToken(user_id=user.id, name=name, token_hash=hash_token(secret))
    async with db.write() as session:
        session.add(token)
    return token, secret


async def revoke_token(db: Database, *, token_id: int, user: User | None = None) -> ApiToken:
    """Revoke a token (idempotent); scoped to user unless None (an operator on the CLI)."""
    query = select(ApiToken).where(col(ApiToken.id) == token_id).with_for_update()
    if user is not None and not user.is_admin:
        query = query.where(col(ApiToken.user_id) == user.id)
    async with db.write() as session:
        token = (await session.execute(query)).scalar_one_or_none()
        if token is None:
            raise NotFound(f"no API token with id {token_id}")
        if token.revoked_at is None:
            token.revoked_at = utcnow()
    return token


async def token_principal(db: Database, *, secret: str) -> Principal | None:
    """Who a bearer secret acts as: its user, if the token is not revoked and the user is
    active; else None. Marks the token used (at most once a minute)."""
    async with db.read_connection() as connection:
        found = (await connection.execute(_TOKEN_USER, {"token_hash": hash_token(secret)})).first()
    if found is None:
        return None
    token_id, last_used_at, user_id, username, is_admin = found
    now = utcnow()
    if last_used_at is None or last_used_at <= now - TOUCH_EVERY:
        # Only if no concurrent request marked it meanwhile: a burst of requests with one
        # token would otherwise each update its row in turn, every one waiting for the
        # previous one's commit while holding a pooled connection.
        stale = or_(
            col(ApiToken.last_used_at).is_(None), col(ApiToken.last_used_at) <= now - TOUCH_EVERY
        )
        async with db.write(one_statement=True) as session:
            await session.execute(
                update(ApiToken).where(col(ApiToken.id) == token_id, stale).values(last_used_at=now)
            )
    return Principal(user_id=user_id, username=username, is_admin=is_admin, token_id=token_id)
