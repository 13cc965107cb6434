"""API tokens: the secret is shown once and only its SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from webapp.errors import NotFound
from webapp.models import ApiToken, User
from webapp.types import utcnow

TOKEN_PREFIX = "mat_"


def hash_token(secret: str) -> str:
    """The stored form of a token secret.

    A fast hash is right here: secrets are 256 random bits, so there is nothing to
    brute-force, and every API request has to look its token up.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_token(session: AsyncSession, *, user: User, name: str) -> tuple[ApiToken, str]:
    """Create a token for user; returns it with the secret, which is not kept anywhere."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    assert user.id is not None
    token = ApiToken(user_id=user.id, name=name, token_hash=hash_token(secret))
    session.add(token)
    await session.commit()
    return token, secret


async def revoke_token(
    session: AsyncSession, *, token_id: int, user: User | None = None
) -> ApiToken:
    """Revoke a token (idempotent); scoped to user unless None (an operator on the CLI)."""
    query = select(ApiToken).where(col(ApiToken.id) == token_id)
    if user is not None and not user.is_admin:
        query = query.where(col(ApiToken.user_id) == user.id)
    token = (await session.execute(query)).scalar_one_or_none()
    if token is None:
        raise NotFound(f"no API token with id {token_id}")
    if token.revoked_at is None:
        now = utcnow()
        await session.execute(
            update(ApiToken).where(col(ApiToken.id) == token_id).values(revoked_at=now)
        )
        token.revoked_at = now
        await session.commit()
    return token
