"""Users: creation with argon2 password hashes, lookup by name."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import ColumnElement, ScalarSelect, bindparam, false, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from webapp.db import Database
from webapp.errors import Conflict, NotFound
from webapp.models import LongTermMemory, User, UserCreate
from webapp.services.principal import Principal
from webapp.services.stats import state_counts
from webapp.types import utcnow
from webapp.validation import validate_username

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


async def create_user(db: Database, *, data: UserCreate, password_hash: str | None = None) -> User:
    """Create a user from validated input; Conflict if the username is taken.

    password_hash, when given, is stored instead of hashing data.password (an argon2 hash
    made earlier with hash_password, for callers that create many users with one password).
    """
    user = User(
        username=data.username,
        email=data.email,
        is_admin=data.is_admin,
        is_active=data.is_active,
        password_hash=password_hash or hash_password(data.password),
    )
    try:
        async with db.write() as session:
            session.add(user)
    except IntegrityError as exc:
        raise Conflict(f"user {data.username!r} already exists") from exc
    return user


async def get_user_by_username(db: Database, *, username: str) -> User:
    """The user called username; NotFound otherwise."""
    async with db.read() as session:
        user = (
            await session.execute(select(User).where(col(User.username) == username))
        ).scalar_one_or_none()
    if user is None:
        raise NotFound(f"no user named {username!r}")
    return user


async def count_users(db: Database, *, search: str | None = None) -> int:
    """How many users there are, active or not (those matching search, if given)."""
    query = select(func.count()).select_from(User)
    if search:
        query = query.where(_matching(search))
    async with db.read() as session:
        return int((await session.execute(query)).scalar_one())


def _matching(search: str) -> ColumnElement[bool]:
    """Users whose username or email holds search (LIKE's wildcards taken literally)."""
    if "\x00" in search:  # no username or address holds one, and PostgreSQL refuses it
        return false()
    pattern = (
        "%" + search.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    )
    return col(User.username).ilike(pattern, escape="\\") | col(User.email).ilike(
        pattern, escape="\\"
    )


async def count_admins(db: Database) -> int:
    """How many active admin users exist (serve says how to create the first)."""
    query = select(func.count()).select_from(User).where(col(User.is_admin), col(User.is_active))
    async with db.read() as session:
        return int((await session.execute(query)).scalar_one())


async def resolve_user(db: Database, *, principal: Principal, username: str) -> int | None:
    """The id of the user named username if principal may see their memories, else None.

    An ordinary user sees only themselves: another user's name is as absent as an unknown
    one. Every `user=` parameter (pages, Trash, the API, search) is resolved here.
    """
    try:
        validate_username(username)
    except ValueError:
        return None  # no user can have this name (and PostgreSQL refuses a NUL in it)
    query = select(col(User.id)).where(col(User.username) == username)
    async with db.read() as session:
        user_id = (await session.execute(query)).scalar_one_or_none()
    if user_id is None or (not principal.sees_everyone and user_id != principal.own_user_id):
        return None
    return user_id


async def act_as(db: Database, *, principal: Principal, username: str | None) -> Principal:
    """principal working on its own memories, or (an admin's) on username's: what the API's
    and MCP's `user=` asks for. An unknown user, or another user for a non-admin, is
    NotFound, never a refusal that confirms they exist."""
    if username is None or username == principal.username:
        if principal.user_id is None:
            raise NotFound("no such user")
        return principal.acting_for(principal.user_id)
    user_id = await resolve_user(db, principal=principal, username=username)
    if user_id is None:
        raise NotFound("no such user")
    return principal.acting_for(user_id)


@lru_cache(maxsize=1024)
def user_id_named(username: str) -> ScalarSelect[int]:
    """The id of the user called username, as a subquery (NULL, matching nothing, for an
    unknown name); kept per name, as a list filtered by user asks for it on every page."""
    return select(col(User.id)).where(col(User.username) == username).scalar_subquery()


@dataclass
class UserSummary:
    """A user as the users list shows it: the row and memory counts per state."""

    user: User
    active: int = 0
    expired: int = 0
    deleted: int = 0


async def list_users(
    db: Database,
    *,
    search: str | None = None,
    limit: int | None = 200,
    after: str | None = None,
    before: str | None = None,
    exact: str | None = None,
) -> list[UserSummary]:
    """Users by name (matching search in username or email), with their memory counts.

    A page of `limit` users (every user with None): the first, or those named after
    `after` or (the page before) before `before`, always in name order; only the one
    called `exact` if given. The counts are
    grouped counts of these users' rows, answered from indexes alone.
    """
    # A position is a username, which holds no NUL (and PostgreSQL refuses one in a query).
    after, before = (None if text is None else text.replace("\x00", "") for text in (after, before))
    name = col(User.username)
    query = select(User).order_by(name.desc() if before is not None else name).limit(limit)
    if search:
        query = query.where(_matching(search))
    if exact is not None:
        query = query.where(name == exact)
    if after is not None:
        query = query.where(name > after)
    if before is not None:
        query = query.where(name < before)
    memories = LongTermMemory.__table__.c  # type: ignore[attr-defined]
    async with db.read() as session:
        users = list((await session.execute(query)).scalars())
        if before is not None:
            users.reverse()
        summaries = {user.id: UserSummary(user=user) for user in users if user.id is not None}
        if summaries:
            # Every user listed: count the whole table by user, not a list of 1,000 ids.
            everyone = limit is None and not search
            scope = [] if everyone else [memories.user_id.in_(list(summaries))]
            statements = state_counts(scope, utcnow(), by=[memories.user_id])
            counts: dict[str, dict[int, int]] = {}
            for state, statement in statements.items():
                rows = (await session.execute(statement)).all()
                counts[state] = {int(user_id): int(n) for user_id, n in rows}
            for user_id, summary in summaries.items():
                summary.deleted = counts["deleted"].get(user_id, 0)
                summary.expired = counts["expired"].get(user_id, 0)
                summary.active = counts["total"].get(user_id, 0) - summary.deleted - summary.expired
    return list(summaries.values())


_users = User.__table__  # type: ignore[attr-defined]
_USERNAMES = select(_users.c.id, _users.c.username).where(
    _users.c.id.in_(bindparam("user_ids", expanding=True))
)
"""Built once: a list page names its rows' owners on every request."""


async def usernames(db: Database, *, user_ids: Iterable[int]) -> dict[int, str]:
    """The usernames of user_ids (for showing whose memory a row is)."""
    async with db.read() as session:
        return await usernames_in(session, user_ids)


async def usernames_in(session: AsyncSession, user_ids: Iterable[int]) -> dict[int, str]:
    """usernames(), in a session the caller holds (browse names a page's owners in its own
    read session)."""
    ids = sorted(set(user_ids))
    if not ids:
        return {}
    rows = await session.execute(_USERNAMES, {"user_ids": ids})
    return {int(user_id): str(name) for user_id, name in rows.all()}
