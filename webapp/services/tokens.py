"""API tokens: the secret is shown once and only its SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, bindparam, or_, select, update
from sqlmodel import col

from webapp.db import Database
from webapp.errors import Conflict, InvalidInput, NotFound, Unauthorized
from webapp.models import ApiToken, User
from webapp.services.principal import Principal
from webapp.types import utcnow
from webapp.validation import validate_token_name

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


NO_TOKEN = "send an API token: Authorization: Bearer <token>"
BAD_TOKEN = "the API token is unknown or revoked"


def hash_token(secret: str) -> str:
    """The stored form of a token secret.

    A fast hash is right here: secrets are 256 random bits, so there is nothing to
    brute-force, and every API request has to look its token up. The lookup is an
    equality on this hash in the database, not a constant-time comparison, and that is
    safe: the index's timing could at most tell how much of a stored hash a guess's hash
    shares, and an attacker cannot steer SHA-256's output toward a prefix, nor learn the
    secret from its hash (SECURITY.md, "Comparing secrets").
    """
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class ListedToken:
    """A token as the tokens page shows it: the row (never the secret) and its owner's name."""

    token: ApiToken
    owner: str

    @property
    def state(self) -> str:
        """`active` or `revoked`."""
        return "active" if self.token.revoked_at is None else "revoked"


def token_name(name: str) -> str:
    """The name a token would be stored with (trimmed); InvalidInput if it breaks the rule."""
    try:
        return validate_token_name(name)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


async def create_token(
    db: Database, *, user: User, name: str, form_issued_at: datetime | None = None
) -> tuple[ApiToken, str]:
    """Create a token for user; returns it with the secret, which is not kept anywhere.

    form_issued_at, when the request came from a form, is when that form was shown: if a
    token of user with this name was created since, the form is being sent again (a
    reload of the page that showed the secret) and Conflict is raised, nothing created.
    """
    label = token_name(name)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    assert user.id is not None
    token = ApiToken(user_id=user.id, name=label, token_hash=hash_token(secret))
    async with db.write() as session:
        if form_issued_at is not None:
            again = select(col(ApiToken.id)).where(
                col(ApiToken.user_id) == user.id,
                col(ApiToken.name) == label,
                col(ApiToken.created_at) >= form_issued_at,
            )
            if (await session.execute(again.limit(1))).first() is not None:
                raise Conflict(
                    f"A token named “{label}” was created since this form was shown: the "
                    "form was sent again (reloading the page that showed a secret does that). "
                    "Nothing new was created. A secret is shown only once; if you did not "
                    "copy it, revoke that token and create a new one."
                )
        session.add(token)
    return token, secret


async def token_owner(db: Database, *, principal: Principal, username: str | None) -> User:
    """The user a new token acts as: the principal's own user unless an admin names another.

    An unknown name is InvalidInput (for an admin, who may name anyone); another user's
    name from a non-admin is NotFound, as for every other user's thing.
    """
    name = (username or "").strip() or principal.username
    query = select(User).where(col(User.username) == name)
    async with db.read() as session:
        user = (await session.execute(query)).scalar_one_or_none()
    if user is not None and (principal.is_admin or user.id == principal.user_id):
        return user
    if principal.is_admin:
        raise InvalidInput(f"no user named {name!r}")
    raise NotFound(f"no user named {name!r}")


def _listed() -> Select[ApiToken, str]:
    return select(ApiToken, col(User.username)).join(User, col(User.id) == col(ApiToken.user_id))


async def list_tokens(
    db: Database, *, principal: Principal, user_id: int | None = None, limit: int | None = None
) -> list[ListedToken]:
    """The tokens principal may see (admins: everyone's, or user_id's; others: their own),
    active ones first, newest first; at most limit of them."""
    query = _listed()
    if not principal.is_admin:
        query = query.where(col(ApiToken.user_id) == principal.user_id)
    elif user_id is not None:
        query = query.where(col(ApiToken.user_id) == user_id)
    query = query.order_by(
        col(ApiToken.revoked_at).is_not(None), col(ApiToken.created_at).desc(), col(ApiToken.id)
    ).limit(limit)
    async with db.read() as session:
        rows = (await session.execute(query)).all()
    return [ListedToken(token=token, owner=owner) for token, owner in rows]


async def get_token(db: Database, *, principal: Principal, token_id: int) -> ListedToken:
    """One token principal may see; NotFound for an unknown id or another user's token
    (unless principal is an admin)."""
    query = _listed().where(col(ApiToken.id) == token_id)
    if not principal.is_admin:
        query = query.where(col(ApiToken.user_id) == principal.user_id)
    async with db.read() as session:
        found = (await session.execute(query)).first()
    if found is None:
        raise NotFound(f"no API token with id {token_id}")
    return ListedToken(token=found[0], owner=found[1])


async def revoke_token(
    db: Database, *, token_id: int, principal: Principal | None = None
) -> ApiToken:
    """Revoke a token (idempotent); scoped to principal unless None (an operator on the
    CLI): a non-admin's revoke of another user's token is NotFound. The API refuses the
    token from the next request on (token_principal reads revoked_at every time)."""
    query = select(ApiToken).where(col(ApiToken.id) == token_id).with_for_update()
    if principal is not None and not principal.is_admin:
        query = query.where(col(ApiToken.user_id) == principal.user_id)
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


async def bearer_principal(db: Database, *, secret: str | None) -> Principal:
    """Who a request's bearer secret acts as (the API and MCP over HTTP alike): Unauthorized
    when there is none, or it is unknown or revoked, or its user is deactivated."""
    if not secret:
        raise Unauthorized(NO_TOKEN)
    principal = await token_principal(db, secret=secret)
    if principal is None:
        raise Unauthorized(BAD_TOKEN)
    return principal
