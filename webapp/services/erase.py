"""Erasing a user: their row, memories, the events about those memories, tokens, sessions
and login throttle, in one transaction, leaving one content-free record in admin_event.

What goes, and what stays:
- Every memory of theirs (all states) and, through the database's own upkeep, its
  full-text and tag index entries (SQLite's FTS5 table and memory_tag, via triggers;
  PostgreSQL's generated tsvector is part of the row).
- Every event about their memories, whoever wrote it: those events hold the content.
- Events they wrote on other users' memories stay (they are that other user's history),
  with the actor scrubbed to ERASED_ACTOR and its user and token ids set to NULL. The
  same for admin_event rows they wrote as an admin.
- Their API tokens, web sessions and the login throttle row of their username.
- admin_event gains one row: action, actor, the erased user's id and the counts; no
  username (a name is personal data, and the erasure is of the person).

SQLite keeps bytes of deleted rows in places SQL cannot see but a file search can: FTS5
deletes are tombstones until its segments merge, and freed pages keep their old bytes.
The erasure turns secure_delete on for its connection (freed cells are zeroed) and
runs the FTS5 'optimize', which rewrites the index without the erased rows (it costs
a rewrite of the whole index: see bench/README.md). PostgreSQL leaves dead tuples to
(auto)vacuum; no SQL query sees them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import ColumnElement, Table, delete, func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from webapp.db import Database
from webapp.errors import Conflict, InvalidInput, NotFound
from webapp.models import (
    ApiToken,
    LoginThrottle,
    LongTermMemory,
    MemoryEvent,
    User,
    WebSession,
)
from webapp.models_admin import AdminAction, AdminEvent
from webapp.services.auth import throttle_keys
from webapp.services.fulltext import FTS_TABLE, OWNER_PREFIX, SQLITE_TRIGGERS, TAG_TABLE
from webapp.services.people import LastAdminRefused, refuse_removing_last_admin
from webapp.services.principal import Principal
from webapp.types import utcnow
from webapp.validation import validate_username

_PRAGMA_SECURE_DELETE = text("PRAGMA secure_delete = ON")
_FTS_OPTIMIZE = text(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('optimize')")
_DELETE_TRIGGER = "long_term_memory_ad_search"
# What the delete trigger does row by row, for all of a user's rows in one statement each:
# FTS5 writes its pending changes out at every statement boundary, and inside a trigger
# every row is one, so deleting 30,000 rows through the trigger took over a minute.
SQLITE_UNINDEX = (
    text(f"DROP TRIGGER {_DELETE_TRIGGER}"),
    text(
        f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, key, content, owner) "
        f"SELECT 'delete', id, key, content, '{OWNER_PREFIX}' || user_id "
        "FROM long_term_memory WHERE user_id = :user_id"
    ),
    text(
        f"DELETE FROM {TAG_TABLE} WHERE (tag, memory_id) IN (SELECT each.value, m.id "
        "FROM long_term_memory AS m, json_each(m.tags) AS each WHERE m.user_id = :user_id)"
    ),
    text("DELETE FROM long_term_memory WHERE user_id = :user_id"),
    text(SQLITE_TRIGGERS[_DELETE_TRIGGER]),
)
_memories: Table = LongTermMemory.__table__  # type: ignore[attr-defined]
_events: Table = MemoryEvent.__table__  # type: ignore[attr-defined]
_tokens: Table = ApiToken.__table__  # type: ignore[attr-defined]
_sessions: Table = WebSession.__table__  # type: ignore[attr-defined]

ERASED_ACTOR = "erased user"
"""The actor of a kept event whose author was erased."""


@dataclass(frozen=True)
class ErasureCounts:
    """What an erasure removes (or removed): rows per kind."""

    memories: int
    events: int
    tokens: int
    sessions: int
    authored_events: int
    """Events they wrote on other users' memories: kept, with the actor scrubbed."""


@dataclass(frozen=True)
class ErasurePreview:
    """The user an erasure would remove, what goes with them, and why it may not run."""

    username: str
    user_id: int
    is_admin: bool
    counts: ErasureCounts
    refusal: str | None
    """Set when the erasure is not allowed (the last active admin, or oneself)."""


async def preview_erasure(db: Database, *, principal: Principal, username: str) -> ErasurePreview:
    """What erasing username would remove; NotFound for an unknown user (or a non-admin)."""
    async with db.read() as session:
        return await _preview(session, principal, username)


async def erase_user(
    db: Database, *, principal: Principal, username: str, confirm_username: str
) -> ErasurePreview:
    """Erase username for good, all or nothing, if confirm_username repeats it exactly.

    InvalidInput (nothing changed) when the confirmation differs; Conflict when the
    user is the last active admin or the acting admin. Returns what was removed.
    """
    async with db.write() as session:
        preview = await _preview(session, principal, username, lock=True)
        if confirm_username != preview.username:
            raise InvalidInput(
                f"Type the username {preview.username!r} exactly to confirm; nothing was erased."
            )
        if preview.refusal:
            raise Conflict(preview.refusal)
        await _erase(session, preview, principal)
    return preview


async def _preview(
    session: AsyncSession, principal: Principal, username: str, *, lock: bool = False
) -> ErasurePreview:
    if not principal.is_admin:
        raise NotFound(f"no user named {username!r}")
    try:
        validate_username(username)
    except ValueError:
        raise NotFound(f"no user named {username!r}") from None
    query = select(User).where(col(User.username) == username)
    user = (await session.execute(query.with_for_update() if lock else query)).scalar_one_or_none()
    if user is None or user.id is None:
        raise NotFound(f"no user named {username!r}")
    uid = user.id
    counts = ErasureCounts(
        memories=await _count(session, _memories, _memories.c.user_id == uid),
        events=await _count(session, _events, _events.c.user_id == uid),
        tokens=await _count(session, _tokens, _tokens.c.user_id == uid),
        sessions=await _count(session, _sessions, _sessions.c.user_id == uid),
        authored_events=await _count(session, _events, _events.c.user_id != uid, _authored_by(uid)),
    )
    return ErasurePreview(
        username=user.username,
        user_id=uid,
        is_admin=user.is_admin,
        counts=counts,
        refusal=await _refusal(session, principal, user),
    )


async def _count(session: AsyncSession, table: Table, *conditions: ColumnElement[Any]) -> int:
    query = select(func.count()).select_from(table).where(*conditions)
    return int((await session.execute(query)).scalar_one())


def _authored_by(user_id: int) -> ColumnElement[bool]:
    """Events this user wrote: as a person, or through one of their tokens."""
    return or_(
        _events.c.actor_user_id == user_id,
        _events.c.actor_token_id.in_(select(_tokens.c.id).where(_tokens.c.user_id == user_id)),
    )


async def _refusal(session: AsyncSession, principal: Principal, user: User) -> str | None:
    if user.id == principal.user_id:
        return "You cannot erase yourself; ask another admin."
    if user.is_admin and user.is_active and user.id is not None:
        try:
            await refuse_removing_last_admin(session, user_id=user.id)
        except LastAdminRefused:
            return (
                f"{user.username} is the last active admin and cannot be erased; "
                "make another user an admin first."
            )
    return None


async def _erase(session: AsyncSession, preview: ErasurePreview, principal: Principal) -> None:
    uid = preview.user_id
    sqlite = session.get_bind().dialect.name == "sqlite"
    if sqlite:
        await session.execute(_PRAGMA_SECURE_DELETE)
    await session.execute(delete(MemoryEvent).where(col(MemoryEvent.user_id) == uid))
    await session.execute(
        update(MemoryEvent)
        .where(_authored_by(uid))
        .values(actor=ERASED_ACTOR, actor_user_id=None, actor_token_id=None)
    )
    await session.execute(
        update(AdminEvent)
        .where(col(AdminEvent.actor_user_id) == uid)
        .values(actor=ERASED_ACTOR, actor_user_id=None)
    )
    if sqlite:
        for statement in SQLITE_UNINDEX:  # the trigger is back before the commit
            await session.execute(statement, {"user_id": uid})
    else:
        await session.execute(delete(LongTermMemory).where(col(LongTermMemory.user_id) == uid))
    await session.execute(delete(ApiToken).where(col(ApiToken.user_id) == uid))
    await session.execute(delete(WebSession).where(col(WebSession.user_id) == uid))
    user_key = throttle_keys(preview.username, "")[0]
    await session.execute(delete(LoginThrottle).where(col(LoginThrottle.key) == user_key))
    await session.execute(delete(User).where(col(User.id) == uid))
    await session.execute(
        insert(AdminEvent).values(
            action=AdminAction.erase_user,
            actor=principal.actor,
            actor_user_id=principal.user_id,
            subject_user_id=uid,
            details=asdict(preview.counts),
            created_at=utcnow(),
        )
    )
    if sqlite:
        await session.execute(_FTS_OPTIMIZE)
