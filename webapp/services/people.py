"""Managing people: passwords, admin rights, deactivation, and the last-admin rule.

A deactivated user is locked out at once: their web sessions are deleted in the same
transaction, and every request checks is_active anyway (services.auth and
services.tokens join the user on each lookup), so their API tokens get 401 while they
are inactive. Tokens are not revoked: reactivating a user brings their tokens back, as
deactivation is meant to be undone; revoke a token (or erase the user) to end it for good.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from webapp.db import Database
from webapp.errors import Conflict, NotFound
from webapp.models import ApiToken, PasswordSet, User, WebSession
from webapp.services.principal import Principal
from webapp.services.users import UserSummary, count_users, hash_password, list_users
from webapp.types import utcnow
from webapp.validation import validate_username

PAGE_SIZE = 50
"""Users per page of the users list (a million memories come with 1,000 users)."""


class LastAdminRefused(Conflict):
    """The change would leave no active admin, and nobody could manage the app any more."""


class OwnAccountRefused(Conflict):
    """An admin may not deactivate themselves or take away their own admin rights."""


async def refuse_removing_last_admin(session: AsyncSession, *, user_id: int) -> None:
    """Raise LastAdminRefused when user_id is the only active admin; in the caller's write
    transaction, before it unmakes, deactivates or erases that user.

    The active admins' rows are locked (FOR UPDATE on PostgreSQL; SQLite's BEGIN
    IMMEDIATE lets one writer in at a time), so two admins removed at once cannot each
    see the other one as still there.
    """
    query = (
        select(col(User.id))
        .where(col(User.is_admin), col(User.is_active))
        .order_by(col(User.id))  # every remover locks in one order: no deadlock
        .with_for_update()
    )
    admins = set((await session.execute(query)).scalars())
    if admins and admins <= {user_id}:
        raise LastAdminRefused(
            "This is the last active admin. Make another user an admin first, "
            "so that someone can still manage the app."
        )


@dataclass
class Person:
    """A user as their page shows them: the row, memory counts, live sessions and tokens."""

    summary: UserSummary
    sessions: int
    tokens: int

    @property
    def user(self) -> User:
        """The user row."""
        return self.summary.user

    @property
    def has_password(self) -> bool:
        """False for a user created by an import, who cannot log in until given one."""
        return self.user.password_hash.startswith("$")


async def get_person(db: Database, *, username: str) -> Person:
    """The user called username with their counts; NotFound otherwise."""
    _check_name(username)
    found = await list_users(db, exact=username)
    if not found:
        raise NotFound(f"no user named {username!r}")
    summary = found[0]
    now = utcnow()
    sessions = select(func.count()).where(
        col(WebSession.user_id) == summary.user.id, col(WebSession.expires_at) > now
    )
    tokens = select(func.count()).where(
        col(ApiToken.user_id) == summary.user.id, col(ApiToken.revoked_at).is_(None)
    )
    async with db.read() as session:
        live = int((await session.execute(sessions)).scalar_one())
        usable = int((await session.execute(tokens)).scalar_one())
    return Person(summary=summary, sessions=live, tokens=usable)


@dataclass
class PeoplePage:
    """One page of the users list, with the names its next and previous links start from."""

    items: list[UserSummary]
    total: int
    after: str | None
    before: str | None


async def people_page(
    db: Database,
    *,
    search: str | None = None,
    after: str | None = None,
    before: str | None = None,
    size: int = PAGE_SIZE,
) -> PeoplePage:
    """A page of users by name (keyset on the unique username), their counts and the total."""
    rows = await list_users(db, search=search, limit=size + 1, after=after, before=before)
    more = len(rows) > size
    if before is not None:
        items = rows[-size:] if more else rows
        earlier, later = more, True
    else:
        items = rows[:size]
        earlier, later = after is not None, more
    total = await count_users(db, search=search)
    return PeoplePage(
        items=items,
        total=total,
        after=items[-1].user.username if items and later else None,
        before=items[0].user.username if items and earlier else None,
    )


async def set_password(db: Database, *, username: str, data: PasswordSet | str) -> User:
    """Give the user a new password (a PasswordSet typed twice, or an already checked one)
    and end their sessions in the same transaction: a password is reset because the old
    one may be known, so no browser logged in with it stays in. API tokens are separate
    credentials and keep working (revoke them on the tokens page)."""
    password = data.password if isinstance(data, PasswordSet) else data
    password_hash = hash_password(password)
    async with db.write() as session:
        user = await _user_to_change(session, username)
        user.password_hash = password_hash
        await session.execute(delete(WebSession).where(col(WebSession.user_id) == user.id))
    return user


async def set_admin(db: Database, *, principal: Principal, username: str, is_admin: bool) -> User:
    """Make the user an admin, or unmake them (never the last active admin, nor oneself)."""
    async with db.write() as session:
        user = await _user_to_change(session, username)
        if user.is_admin and not is_admin:
            assert user.id is not None
            await refuse_removing_last_admin(session, user_id=user.id)
            _refuse_own_account(principal, user, "take away your own admin rights")
        user.is_admin = is_admin
    return user


async def set_active(db: Database, *, principal: Principal, username: str, is_active: bool) -> User:
    """Reactivate the user, or deactivate them: their sessions end in the same transaction
    and their tokens are refused while they stay inactive (never the last active admin,
    nor oneself)."""
    async with db.write() as session:
        user = await _user_to_change(session, username)
        assert user.id is not None
        if user.is_active and not is_active:
            await refuse_removing_last_admin(session, user_id=user.id)
            _refuse_own_account(principal, user, "deactivate yourself")
        if not is_active:
            await session.execute(delete(WebSession).where(col(WebSession.user_id) == user.id))
        user.is_active = is_active
    return user


def _refuse_own_account(principal: Principal, user: User, what: str) -> None:
    if principal.user_id is not None and principal.user_id == user.id:
        raise OwnAccountRefused(f"You cannot {what}. Ask another admin.")


def _check_name(username: str) -> None:
    try:
        validate_username(username)
    except ValueError:
        raise NotFound(f"no user named {username!r}") from None


async def _user_to_change(session: AsyncSession, username: str) -> User:
    """The user row, to change in this transaction. Not locked here: a removal locks the
    active admins first (refuse_removing_last_admin), and the UPDATE then locks the row."""
    _check_name(username)
    query = select(User).where(col(User.username) == username)
    user = (await session.execute(query)).scalar_one_or_none()
    if user is None:
        raise NotFound(f"no user named {username!r}")
    return user
